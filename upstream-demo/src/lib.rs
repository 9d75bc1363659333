//! The demo shop: a small sports-shop JSON API with no security of its own.
//!
//! It stands for "the existing API" that Portcullis is put in front of. It trusts
//! whoever calls it; the only trace of a gateway is that an `X-Auth-User` header, when
//! present, is recorded on an order as `placed_by`. Data lives in memory and is seeded
//! with sample products at start.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

/// Largest request body the shop reads.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub category: String,
    pub price: f64,
    pub stock: u64,
    /// Who the shop buys it from: internal, for staff only.
    pub supplier: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub address: String,
    pub phone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: u64,
    pub customer_id: String,
    pub product_id: u64,
    pub quantity: u64,
    pub placed_by: Option<String>,
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Staff {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub position: String,
}

#[derive(Default)]
struct Data {
    products: BTreeMap<u64, Product>,
    customers: BTreeMap<String, Customer>,
    orders: BTreeMap<u64, Order>,
    staff: BTreeMap<u64, Staff>,
    next_product: u64,
    next_order: u64,
    next_staff: u64,
}

/// The shop's state, shared by every connection.
#[derive(Clone)]
pub struct Shop {
    data: Arc<Mutex<Data>>,
}

impl Default for Shop {
    fn default() -> Self {
        Self::seeded()
    }
}

const SEED: &[(&str, &str, f64, u64)] = &[
    ("Trail running shoes", "footwear", 119.0, 24),
    ("Road cycling helmet", "cycling", 89.5, 15),
    ("Yoga mat", "fitness", 29.99, 60),
    ("Football, size 5", "team sports", 24.0, 80),
    ("Tennis racket", "racket sports", 149.0, 12),
    ("Swimming goggles", "swimming", 18.5, 45),
    ("Climbing harness", "climbing", 65.0, 10),
    ("Adjustable dumbbells", "fitness", 199.0, 8),
    ("Hiking backpack 30 l", "outdoor", 95.0, 20),
    ("Basketball", "team sports", 32.0, 40),
    ("Cycling gloves", "cycling", 22.0, 35),
    ("Running socks, 3 pairs", "footwear", 15.0, 100),
    ("Skipping rope", "fitness", 9.9, 70),
    ("Ski goggles", "winter sports", 79.0, 14),
];

impl Shop {
    /// A shop holding the sample catalogue and nothing else.
    pub fn seeded() -> Self {
        let mut data = Data {
            next_product: 1,
            next_order: 1,
            next_staff: 1,
            ..Data::default()
        };
        for (name, category, price, stock) in SEED {
            let id = data.next_product;
            data.next_product += 1;
            data.products.insert(
                id,
                Product {
                    id,
                    name: (*name).into(),
                    category: (*category).into(),
                    price: *price,
                    stock: *stock,
                    supplier: supplier_for(category).into(),
                },
            );
        }
        Self {
            data: Arc::new(Mutex::new(data)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic while holding the lock cannot leave the maps half-written in a way
        // that matters for a demo; keep serving.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body + Send,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let placed_by = parts
            .headers
            .get("x-auth-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let segments: Vec<&str> = parts.uri.path().split('/').skip(1).collect();
        let method = &parts.method;
        match segments.as_slice() {
            ["healthz"] if method == Method::GET => json_response(StatusCode::OK, &json!({"status": "ok"})),
            ["api", "products"] => match *method {
                Method::GET | Method::HEAD => self.list_products(),
                Method::POST => self.create_product(&body),
                _ => method_not_allowed(),
            },
            ["api", "products", id] => match parse_id(id) {
                None => not_found(),
                Some(id) => match *method {
                    Method::GET | Method::HEAD => self.get_product(id),
                    Method::PUT => self.update_product(id, &body),
                    Method::DELETE => self.delete_product(id),
                    _ => method_not_allowed(),
                },
            },
            ["api", "customers"] => match *method {
                Method::GET | Method::HEAD => {
                    let list: Vec<Customer> = self.lock().customers.values().cloned().collect();
                    json_response(StatusCode::OK, &list)
                }
                _ => method_not_allowed(),
            },
            ["api", "customers", id] if !id.is_empty() => match *method {
                Method::GET | Method::HEAD => self.get_customer(id),
                Method::PUT => self.put_customer(id, &body),
                Method::DELETE => self.delete_customer(id),
                _ => method_not_allowed(),
            },
            ["api", "customers", id, "orders"] if !id.is_empty() => match *method {
                Method::GET | Method::HEAD => {
                    let list: Vec<Order> = self
                        .lock()
                        .orders
                        .values()
                        .filter(|o| o.customer_id == *id)
                        .cloned()
                        .collect();
                    json_response(StatusCode::OK, &list)
                }
                Method::POST => self.place_order(id, &body, placed_by),
                _ => method_not_allowed(),
            },
            ["api", "orders"] => match *method {
                Method::GET | Method::HEAD => {
                    let list: Vec<Order> = self.lock().orders.values().cloned().collect();
                    json_response(StatusCode::OK, &list)
                }
                _ => method_not_allowed(),
            },
            ["api", "staff"] => match *method {
                Method::GET | Method::HEAD => {
                    let list: Vec<Staff> = self.lock().staff.values().cloned().collect();
                    json_response(StatusCode::OK, &list)
                }
                Method::POST => self.create_staff(&body),
                _ => method_not_allowed(),
            },
            ["api", "staff", id] => match parse_id(id) {
                None => not_found(),
                Some(id) => match *method {
                    Method::GET | Method::HEAD => match self.lock().staff.get(&id) {
                        Some(s) => json_response(StatusCode::OK, s),
                        None => not_found(),
                    },
                    Method::PUT => self.update_staff(id, &body),
                    Method::DELETE => match self.lock().staff.remove(&id) {
                        Some(_) => no_content(),
                        None => not_found(),
                    },
                    _ => method_not_allowed(),
                },
            },
            _ => not_found(),
        }
    }

    fn list_products(&self) -> Response<Full<Bytes>> {
        let list: Vec<Product> = self.lock().products.values().cloned().collect();
        json_response(StatusCode::OK, &list)
    }

    fn get_product(&self, id: u64) -> Response<Full<Bytes>> {
        match self.lock().products.get(&id) {
            Some(p) => json_response(StatusCode::OK, p),
            None => not_found(),
        }
    }

    fn create_product(&self, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct New {
            name: String,
            #[serde(default)]
            category: String,
            price: f64,
            stock: u64,
            #[serde(default)]
            supplier: String,
        }
        let Some(new) = parse_json::<New>(body) else {
            return malformed();
        };
        if new.name.trim().is_empty() || !valid_price(new.price) {
            return error(
                StatusCode::BAD_REQUEST,
                "name must be non-empty and price a non-negative number",
            );
        }
        let mut data = self.lock();
        let id = data.next_product;
        data.next_product += 1;
        let product = Product {
            id,
            name: new.name,
            category: new.category,
            price: new.price,
            stock: new.stock,
            supplier: new.supplier,
        };
        data.products.insert(id, product.clone());
        json_response(StatusCode::CREATED, &product)
    }

    fn update_product(&self, id: u64, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct Update {
            name: Option<String>,
            category: Option<String>,
            price: Option<f64>,
            stock: Option<u64>,
        }
        let Some(update) = parse_json::<Update>(body) else {
            return malformed();
        };
        if update.name.as_deref().is_some_and(|n| n.trim().is_empty()) || update.price.is_some_and(|p| !valid_price(p))
        {
            return error(
                StatusCode::BAD_REQUEST,
                "name must be non-empty and price a non-negative number",
            );
        }
        let mut data = self.lock();
        let Some(product) = data.products.get_mut(&id) else {
            return not_found();
        };
        if let Some(name) = update.name {
            product.name = name;
        }
        if let Some(category) = update.category {
            product.category = category;
        }
        if let Some(price) = update.price {
            product.price = price;
        }
        if let Some(stock) = update.stock {
            product.stock = stock;
        }
        json_response(StatusCode::OK, &*product)
    }

    fn delete_product(&self, id: u64) -> Response<Full<Bytes>> {
        match self.lock().products.remove(&id) {
            Some(_) => no_content(),
            None => not_found(),
        }
    }

    fn get_customer(&self, id: &str) -> Response<Full<Bytes>> {
        match self.lock().customers.get(id) {
            Some(c) => json_response(StatusCode::OK, c),
            None => not_found(),
        }
    }

    fn put_customer(&self, id: &str, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct Particulars {
            name: String,
            #[serde(default)]
            address: String,
            #[serde(default)]
            phone: String,
        }
        let Some(p) = parse_json::<Particulars>(body) else {
            return malformed();
        };
        let customer = Customer {
            id: id.to_owned(),
            name: p.name,
            address: p.address,
            phone: p.phone,
        };
        let existed = self.lock().customers.insert(id.to_owned(), customer.clone()).is_some();
        let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
        json_response(status, &customer)
    }

    fn delete_customer(&self, id: &str) -> Response<Full<Bytes>> {
        match self.lock().customers.remove(id) {
            Some(_) => no_content(),
            None => not_found(),
        }
    }

    fn place_order(&self, customer_id: &str, body: &[u8], placed_by: Option<String>) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct NewOrder {
            product_id: u64,
            quantity: u64,
        }
        let Some(new) = parse_json::<NewOrder>(body) else {
            return malformed();
        };
        if new.quantity == 0 {
            return error(StatusCode::BAD_REQUEST, "quantity must be at least 1");
        }
        let mut data = self.lock();
        let Some(product) = data.products.get_mut(&new.product_id) else {
            return error(StatusCode::NOT_FOUND, "no such product");
        };
        if product.stock < new.quantity {
            return error(StatusCode::CONFLICT, "not enough stock");
        }
        product.stock -= new.quantity;
        let id = data.next_order;
        data.next_order += 1;
        let order = Order {
            id,
            customer_id: customer_id.to_owned(),
            product_id: new.product_id,
            quantity: new.quantity,
            placed_by,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        data.orders.insert(id, order.clone());
        json_response(StatusCode::CREATED, &order)
    }

    fn create_staff(&self, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct NewStaff {
            name: String,
            #[serde(default)]
            email: String,
            #[serde(default)]
            position: String,
        }
        let Some(new) = parse_json::<NewStaff>(body) else {
            return malformed();
        };
        if new.name.trim().is_empty() {
            return error(StatusCode::BAD_REQUEST, "name must be non-empty");
        }
        let mut data = self.lock();
        let id = data.next_staff;
        data.next_staff += 1;
        let staff = Staff {
            id,
            name: new.name,
            email: new.email,
            position: new.position,
        };
        data.staff.insert(id, staff.clone());
        json_response(StatusCode::CREATED, &staff)
    }

    fn update_staff(&self, id: u64, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct Update {
            name: Option<String>,
            email: Option<String>,
            position: Option<String>,
        }
        let Some(update) = parse_json::<Update>(body) else {
            return malformed();
        };
        let mut data = self.lock();
        let Some(staff) = data.staff.get_mut(&id) else {
            return not_found();
        };
        if let Some(name) = update.name {
            staff.name = name;
        }
        if let Some(email) = update.email {
            staff.email = email;
        }
        if let Some(position) = update.position {
            staff.position = position;
        }
        json_response(StatusCode::OK, &*staff)
    }
}

fn valid_price(price: f64) -> bool {
    price.is_finite() && price >= 0.0
}

fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn malformed() -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, "malformed JSON")
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::default()))
}

/// The wholesaler the sample catalogue's products of `category` come from.
fn supplier_for(category: &str) -> &'static str {
    match category {
        "footwear" | "fitness" => "Northwind Sports Wholesale",
        "cycling" | "outdoor" | "climbing" | "winter sports" => "Alpine Trade Ltd",
        _ => "Sportique Distribution",
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn not_found() -> Response<Full<Bytes>> {
    error(StatusCode::NOT_FOUND, "not found")
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

fn no_content() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Serves the shop on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shop: Shop, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let shop = shop.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shop = shop.clone();
                async move { Ok::<_, Infallible>(shop.handle(req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn call(shop: &Shop, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-auth-user", "u-clerk")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = shop.handle(req).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    // The seeded catalogue holds at least a dozen products.
    #[tokio::test]
    async fn seeded_catalogue() {
        let shop = Shop::seeded();
        let (status, list) = call(&shop, Method::GET, "/api/products", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(list.as_array().unwrap().len() >= 12);
    }

    // A purchase takes stock, records placed_by, and is refused with 409 past the stock.
    #[tokio::test]
    async fn purchase_takes_stock() {
        let shop = Shop::seeded();
        let (status, order) = call(
            &shop,
            Method::POST,
            "/api/customers/u-1/orders",
            r#"{"product_id":7,"quantity":4}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(order["placed_by"], "u-clerk");
        let (_, product) = call(&shop, Method::GET, "/api/products/7", "").await;
        assert_eq!(product["stock"], 6);
        let (status, _) = call(
            &shop,
            Method::POST,
            "/api/customers/u-1/orders",
            r#"{"product_id":7,"quantity":7}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, orders) = call(&shop, Method::GET, "/api/customers/u-1/orders", "").await;
        assert_eq!(orders.as_array().unwrap().len(), 1);
        let (_, orders) = call(&shop, Method::GET, "/api/customers/u-2/orders", "").await;
        assert_eq!(orders.as_array().unwrap().len(), 0);
    }

    // PUT on a customer creates, then updates; malformed JSON is 400; unknown ids 404.
    #[tokio::test]
    async fn customer_particulars() {
        let shop = Shop::seeded();
        let (status, _) = call(
            &shop,
            Method::PUT,
            "/api/customers/u-9",
            r#"{"name":"Ann","address":"1 Road","phone":"123"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, c) = call(&shop, Method::PUT, "/api/customers/u-9", r#"{"name":"Ann B"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(c["id"], "u-9");
        let (status, _) = call(&shop, Method::PUT, "/api/customers/u-9", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(&shop, Method::GET, "/api/customers/u-404", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&shop, Method::GET, "/api/products/9999", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Staff records can be created, read, updated and deleted.
    #[tokio::test]
    async fn staff_crud() {
        let shop = Shop::seeded();
        let (status, s) = call(&shop, Method::POST, "/api/staff", r#"{"name":"Bo","position":"clerk"}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        let path = format!("/api/staff/{}", s["id"]);
        let (status, s) = call(&shop, Method::PUT, &path, r#"{"position":"lead"}"#).await;
        assert_eq!((status, s["position"].as_str()), (StatusCode::OK, Some("lead")));
        assert_eq!(call(&shop, Method::DELETE, &path, "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&shop, Method::GET, &path, "").await.0, StatusCode::NOT_FOUND);
    }
}
