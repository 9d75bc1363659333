"""A tiny FastAPI application whose OpenAPI 3.1 document (GET /openapi.json)
tests/openapi_init.rs turns into a policy with `portcullis policy init --from-openapi`,
then serves as the upstream of a gateway running that policy."""

from typing import Optional

from fastapi import FastAPI, Response
from pydantic import BaseModel

app = FastAPI(title="Portcullis test inventory", version="0.1.0")


class Address(BaseModel):
    street: str
    city: str


class NewItem(BaseModel):
    name: str
    price: float
    supplier: Optional[Address] = None


class Item(NewItem):
    id: int


ITEMS = {1: Item(id=1, name="lamp", price=12.5, supplier=Address(street="1 Main St", city="Springfield"))}


@app.get("/items", response_model=list[Item], summary="List the items")
def list_items():
    return list(ITEMS.values())


@app.post("/items", response_model=Item, status_code=201, summary="Add an item")
def add_item(item: NewItem):
    new = Item(id=max(ITEMS) + 1, **item.model_dump())
    ITEMS[new.id] = new
    return new


@app.get("/items/{item_id}", response_model=Item, summary="One item")
def get_item(item_id: int):
    return ITEMS.get(item_id) or Item(id=item_id, name="unknown", price=0)


@app.put("/items/{item_id}", response_model=Item, summary="Replace an item")
def put_item(item_id: int, item: NewItem):
    ITEMS[item_id] = Item(id=item_id, **item.model_dump())
    return ITEMS[item_id]


@app.delete("/items/{item_id}", status_code=204, summary="Remove an item")
def delete_item(item_id: int):
    ITEMS.pop(item_id, None)
    return Response(status_code=204)


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
