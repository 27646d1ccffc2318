//! Shared helpers of the integration tests: an in-process simulator on a free loopback
//! port, and small HTTP helpers around reqwest.

use lomi_sim::{Sim, SimOptions};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A simulator serving on `127.0.0.1:<free port>` on the current runtime. Dropping it
/// shuts the server down.
pub struct TestSim {
    pub sim: Sim,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    pub api_key: String,
    /// A client for this simulator (kept per test: a pooled connection must not outlive
    /// the runtime that opened it).
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestSim {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// Sends a request with the simulator's API key in `X-API-KEY` and, when given, a
    /// JSON body.
    pub async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("X-API-KEY", &self.api_key);
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        req.send().await.expect("request to the simulator")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    /// GETs `path` with the key and returns its JSON, asserting a 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        expect_json(res, StatusCode::OK).await
    }

    /// POSTs to a control endpoint (no key) and returns its JSON, asserting a 200.
    pub async fn control(&self, path: &str, body: &str) -> Value {
        let res = self
            .client
            .post(self.url(path))
            .body(body.to_owned())
            .send()
            .await
            .expect("control request");
        expect_json(res, StatusCode::OK).await
    }
}

/// Starts a simulator with `opts` on a free loopback port.
pub async fn spawn_sim(opts: SimOptions) -> TestSim {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let api_key = opts.api_key.clone();
    let sim = Sim::new(opts);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(sim.clone().serve(listener, async {
        let _ = rx.await;
    }));
    TestSim {
        sim,
        base_url: format!("http://{addr}"),
        api_key,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
    }
}

/// Options for a small, fast simulator: `customers` customers, 3 transactions on average.
pub fn small_sim_options(customers: usize, seed: u64) -> SimOptions {
    SimOptions {
        customers,
        seed,
        tx_per_customer: 3.0,
        ..SimOptions::default()
    }
}

/// GETs `url` with `key` in `X-API-KEY` and returns its JSON, asserting a 200.
pub async fn get_json(url: &str, key: &str) -> Value {
    let res = reqwest::Client::new()
        .get(url)
        .header("X-API-KEY", key)
        .send()
        .await
        .expect("GET request");
    expect_json(res, StatusCode::OK).await
}

/// Reads a JSON body, asserting the status first (the body is shown when it differs).
pub async fn expect_json(res: Response, status: StatusCode) -> Value {
    let actual = res.status();
    let url = res.url().clone();
    let bytes = res.bytes().await.expect("response body");
    assert_eq!(actual, status, "{url}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "{url}: body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// A customer object's id, whichever key (`id` or `customer_id`) carries it.
pub fn customer_id(customer: &Value) -> &str {
    customer
        .get("id")
        .or_else(|| customer.get("customer_id"))
        .and_then(Value::as_str)
        .expect("customer object has an id")
}
