# The field-list rows' upstream answer and routes, shared by compare.sh and callgrind.sh
# (sourced from the repository root).

# catalog_json: ten catalogue entries (~2 KB of JSON), each with a "cost_price" that the
# filtered route hides.
catalog_json() {
  python3 - <<'PY'
import json
items = [{"id": i, "sku": f"SKU-{1000 + i}", "name": f"Item {i}", "category": "fitness", "price": 10.0 + i,
          "currency": "EUR", "stock": 5 * i, "rating": 4.5, "cost_price": 4.0 + i,
          "description": "A sturdy everyday item for the bench, in one size.", "tags": ["bench", "json"]}
         for i in range(1, 11)]
print(json.dumps(items, separators=(",", ":")))
PY
}

# catalog_routes: the policy routes over it, for a `customer`: /api/catalog with
# `response_fields`, /api/catalog-all without.
catalog_routes() {
  cat <<'TOML'
[[route]]
name = "catalog-filtered"
methods = ["GET"]
path = "/api/catalog"
roles = ["customer"]
response_fields = ["id", "sku", "name", "category", "price", "currency", "stock", "rating", "description", "tags"]
[[route]]
name = "catalog-unfiltered"
methods = ["GET"]
path = "/api/catalog-all"
roles = ["customer"]
TOML
}
