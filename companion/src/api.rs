//! The local HTTP API and the page (`docs/companion.md`, "The API").
//!
//! Every request passes [`crate::guard`] first (Host, Origin, and the
//! token for everything under `/api/`). Bodies are JSON of at most
//! [`MAX_BODY_BYTES`], each an object: unknown fields, and a body of another
//! JSON type (`[]`, `null`, a number), are refused (422). At most
//! [`MAX_CONNECTIONS`] connections are served at once, each closed after
//! [`IDLE_TIMEOUT`] without a byte either way, and at most
//! [`MAX_EVENT_STREAMS`] event streams are open at once.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` , `/app.js`, `/app.css` | the page (no data; no token needed) |
//! | `GET /api/v1/library` | the companion, its limits and every item |
//! | `GET /api/v1/items/{id}` | one item |
//! | `POST /api/v1/shares/preview`, `POST /api/v1/downloads/preview` | what adding would do and the consent it needs |
//! | `POST /api/v1/shares`, `POST /api/v1/downloads` | add a share or a download (201) |
//! | `POST /api/v1/items/{id}/pause`, `.../resume` | pause or resume |
//! | `PUT /api/v1/items/{id}/caps` | its own caps |
//! | `DELETE /api/v1/items/{id}[?delete_files=true]` | remove it (and a download's files) |
//! | `GET /api/v1/items/{id}/receipt` | a delivered download's receipt |
//! | `GET /api/v1/items/{id}/activity` | a running item's chunks, peers and rates |
//! | `GET /api/v1/rates` | the rates over the last minutes, per item and for the library |
//! | `PUT /api/v1/limits` | the library's caps and quota |
//! | `GET /api/v1/log[?limit=N]` | the transfer log's last entries |
//! | `GET /api/v1/events` | server-sent events: `item`, `removed`, `log`, `limits`, `activity`, `rates` |
//! | `GET /api/v1/follows`, `POST /api/v1/follows` | the followed channels; follow one (201) |
//! | `DELETE /api/v1/follows/{key}/{model}` | stop following it |
//! | `POST /api/v1/follows/{key}/{model}/lookup` | look its channel up now (202; 429 within a minute of the last) |
//! | `POST /api/v1/shutdown` | stop the companion (as SIGTERM does) |

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::ApiError;
use crate::library::ItemId;
use crate::service::Shared;
use crate::view::ErrorBody;

pub use crate::view::MAX_BODY_BYTES;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Event streams open at once.
pub const MAX_EVENT_STREAMS: usize = 16;
/// A connection with no byte read or written for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an event stream sends a comment to stay alive.
pub const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    gate: Arc<crate::guard::Gate>,
    streams: Arc<Semaphore>,
}

/// Serves the API on `listener`, behind `gate`'s checks, until `stop`
/// resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    gate: crate::guard::Gate,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(shared, gate);
    let listener = Limited {
        listener,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<Handling>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

fn router(shared: Arc<Shared>, gate: crate::guard::Gate) -> Router {
    let state = AppState {
        shared,
        gate: Arc::new(gate),
        streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
    };
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/api/v1/library", get(library))
        .route("/api/v1/items/{id}", get(item).delete(remove))
        .route("/api/v1/items/{id}/pause", post(pause))
        .route("/api/v1/items/{id}/resume", post(resume))
        .route("/api/v1/items/{id}/caps", put(set_caps))
        .route("/api/v1/items/{id}/receipt", get(receipt))
        .route("/api/v1/items/{id}/activity", get(activity))
        .route("/api/v1/rates", get(rates))
        .route("/api/v1/shares", post(add_share))
        .route("/api/v1/shares/preview", post(preview_share))
        .route("/api/v1/downloads", post(add_download))
        .route("/api/v1/downloads/preview", post(preview_download))
        .route("/api/v1/limits", put(set_limits))
        .route("/api/v1/log", get(log))
        .route("/api/v1/events", get(events))
        .route("/api/v1/follows", get(follows).post(add_follow))
        .route(
            "/api/v1/follows/{key}/{model}",
            axum::routing::delete(remove_follow),
        )
        .route("/api/v1/follows/{key}/{model}/lookup", post(look_up))
        .route("/api/v1/shutdown", post(shutdown))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The checks of [`crate::guard`], before anything reads the request.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    // Each header the checks read, once: a second copy would go unread by
    // them but not necessarily by everything after them.
    for name in [
        header::HOST,
        header::ORIGIN,
        header::HeaderName::from_static("sec-fetch-site"),
        header::AUTHORIZATION,
    ] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return error_response(
                400,
                ErrorBody {
                    kind: "bad-request".to_owned(),
                    error: format!("the request has more than one {name} header"),
                    hint: None,
                    needs: Vec::new(),
                },
            );
        }
    }
    let value = |name: header::HeaderName| headers.get(name).map(HeaderValue::as_bytes);
    let needs_token = request.uri().path().starts_with("/api/");
    let checked = state.gate.check(
        value(header::HOST),
        value(header::ORIGIN),
        headers.get("sec-fetch-site").map(HeaderValue::as_bytes),
        value(header::AUTHORIZATION),
        needs_token,
    );
    if let Err(refusal) = checked {
        tracing::info!(
            "API request refused ({}): {} {}",
            refusal.status(),
            request.method(),
            request.uri().path()
        );
        let kind = match refusal.status() {
            401 => "unauthorized",
            421 => "wrong-host",
            _ => "forbidden",
        };
        let mut response = error_response(
            refusal.status(),
            ErrorBody {
                kind: kind.to_owned(),
                error: refusal.message().to_owned(),
                hint: None,
                needs: Vec::new(),
            },
        );
        if refusal.status() == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"minimodel companion\""),
            );
        }
        return response;
    }
    let mut response = run_handler(request, next).await;
    let headers = response.headers_mut();
    // No other site may frame the page (its consent buttons) or read it.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_response(status: u16, body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.body)
    }
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Runs the handler of `request` once its body is read whole: only then
/// does the request count as handled ([`Handling`]), so a client that
/// stalls its body is closed by the idle timer as one that stalls its
/// headers is, and a handler never waits for a client. Only the API's
/// POST and PUT requests (past the token check) have bodies read; no
/// other route reads one.
async fn run_handler(request: Request, next: Next) -> Response {
    let takes_body = request.uri().path().starts_with("/api/")
        && matches!(
            *request.method(),
            axum::http::Method::POST | axum::http::Method::PUT
        );
    let request = if takes_body {
        match read_body(request).await {
            Ok(request) => request,
            Err(error) => return error.into_response(),
        }
    } else {
        request
    };
    let handling = Handling::begin_for(&request);
    let response = next.run(request).await;
    drop(handling);
    response
}

/// `request` with its body read into memory: at most [`MAX_BODY_BYTES`]
/// (413 beyond, at once when its length says so), 400 when the client
/// ends it early.
async fn read_body(request: Request) -> Result<Request, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "invalid-input",
            format!("the request's body is over {MAX_BODY_BYTES} bytes"),
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0) as usize);
    while let Some(chunk) = futures_lite::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(400, "bad-request", "the request's body could not be read")
        })?;
        let len = bytes.len() + chunk.len();
        if len > MAX_BODY_BYTES {
            return Err(too_large());
        }
        // Grown by doubling up to the limit, never past it.
        if len > bytes.capacity() {
            let target = (bytes.capacity() * 2).clamp(len, MAX_BODY_BYTES);
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// A request's JSON body: an object, whatever the handler reads from it.
/// Read as an object first, so that a body of another JSON type (`[]`,
/// `1`, `"x"`, `null`) is refused (422) before serde could read an array
/// as a struct's fields in order, or as none of them.
type JsonBody = Result<axum::Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>;

fn body<T: serde::de::DeserializeOwned>(body: JsonBody) -> Result<T, ApiError> {
    let axum::Json(object) = body.map_err(|rejection| {
        let status = rejection.status().as_u16();
        let mut error = ApiError::invalid(rejection.body_text());
        if status == 413 || status == 415 {
            error.status = status;
        }
        error
    })?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|error| {
        ApiError::invalid(format!(
            "Failed to deserialize the JSON body into the target type: {error}"
        ))
    })
}

fn item_id(text: &str) -> Result<ItemId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(text))
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn not_found() -> Response {
    ApiError::invalid("no such endpoint")
        .with_status(404, "not-found")
        .into_response()
}

/// An endpoint called with a method it does not take: an `ErrorBody` as
/// every refusal, not the router's bare 405.
async fn method_not_allowed() -> Response {
    ApiError::invalid("no such endpoint for this method")
        .with_status(405, "not-found")
        .into_response()
}

async fn library(State(state): State<AppState>) -> Response {
    match state.shared.library_view().await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn item(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let result = async { state.shared.item_view(&item_id(&id)?).await }.await;
    match result {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn follows(State(state): State<AppState>) -> Response {
    match state.shared.follows().await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn add_follow(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.add_follow(body(request)?).await }.await {
        Ok(view) => json(StatusCode::CREATED, &view),
        Err(error) => error.into_response(),
    }
}

async fn remove_follow(
    State(state): State<AppState>,
    Path((key, model)): Path<(String, String)>,
) -> Response {
    match state.shared.remove_follow(&key, &model).await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn look_up(
    State(state): State<AppState>,
    Path((key, model)): Path<(String, String)>,
) -> Response {
    match state.shared.request_lookup(&key, &model).await {
        Ok(view) => json(StatusCode::ACCEPTED, &view),
        Err(error) => error.into_response(),
    }
}

async fn add_share(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.add_share(body(request)?).await }.await {
        Ok(view) => json(StatusCode::CREATED, &view),
        Err(error) => error.into_response(),
    }
}

async fn preview_share(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.preview_share(&body(request)?).await }.await {
        Ok(preview) => json(StatusCode::OK, &preview),
        Err(error) => error.into_response(),
    }
}

async fn add_download(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.add_download(body(request)?).await }.await {
        Ok(view) => json(StatusCode::CREATED, &view),
        Err(error) => error.into_response(),
    }
}

async fn preview_download(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.preview_download(&body(request)?).await }.await {
        Ok(preview) => json(StatusCode::OK, &preview),
        Err(error) => error.into_response(),
    }
}

async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match async { state.shared.set_paused(&item_id(&id)?, true).await }.await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match async { state.shared.set_paused(&item_id(&id)?, false).await }.await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn set_caps(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: JsonBody,
) -> Response {
    match async { state.shared.set_caps(&item_id(&id)?, body(request)?).await }.await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

/// `?delete_files=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    delete_files: bool,
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
        state
            .shared
            .remove(&item_id(&id)?, query.delete_files)
            .await
    }
    .await;
    match result {
        Ok(removed) => json(StatusCode::OK, &removed),
        Err(error) => error.into_response(),
    }
}

async fn receipt(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match async { state.shared.receipt(&item_id(&id)?).await }.await {
        Ok(receipt) => json(StatusCode::OK, &receipt),
        Err(error) => error.into_response(),
    }
}

async fn activity(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match async { state.shared.activity(&item_id(&id)?).await }.await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn rates(State(state): State<AppState>) -> Response {
    match state.shared.rates().await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

async fn set_limits(State(state): State<AppState>, request: JsonBody) -> Response {
    match async { state.shared.set_limits(body(request)?).await }.await {
        Ok(view) => json(StatusCode::OK, &view),
        Err(error) => error.into_response(),
    }
}

/// `?limit=N`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn log(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
        state.shared.log_page(query.limit.unwrap_or(100)).await
    }
    .await;
    match result {
        Ok(page) => json(StatusCode::OK, &page),
        Err(error) => error.into_response(),
    }
}

async fn shutdown(State(state): State<AppState>) -> Response {
    let _ = state.shared.shutdown.send(true);
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"stopping": true})),
    )
        .into_response()
}

/// `GET /api/v1/events`: every [`crate::view::ApiEvent`] from now on, as
/// server-sent events, until the client goes or the companion stops. A
/// client too slow to read them gets a `lagged` event with how many it
/// missed (then it should read `/api/v1/library` again).
async fn events(State(state): State<AppState>, _headers: HeaderMap) -> Response {
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        return ApiError::invalid(format!(
            "{MAX_EVENT_STREAMS} event streams are open already"
        ))
        .with_status(429, "too-many")
        .into_response();
    };
    let receiver = state.shared.subscribe();
    let shutdown = state.shared.shutdown.subscribe();
    struct Stream {
        receiver: tokio::sync::broadcast::Receiver<crate::view::ApiEvent>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        _permit: OwnedSemaphorePermit,
    }
    let stream = futures_lite::stream::unfold(
        Stream {
            receiver,
            shutdown,
            _permit: permit,
        },
        |mut stream| async move {
            use tokio::sync::broadcast::error::RecvError;
            if *stream.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                received = stream.receiver.recv() => match received {
                    Ok(event) => {
                        let sse = Event::default().event(event.name()).data(event.data());
                        Some((Ok::<_, Infallible>(sse), stream))
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let sse = Event::default()
                            .event("lagged")
                            .data(format!("{{\"missed\":{missed}}}"));
                        Some((Ok(sse), stream))
                    }
                    Err(RecvError::Closed) => None,
                },
                _ = stream.shutdown.changed() => None,
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(EVENT_KEEP_ALIVE))
        .into_response()
}

/// A listener that serves at most [`MAX_CONNECTIONS`] at once.
struct Limited {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Limited {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedStream::new(stream, permit), addr);
                }
                Err(error) => {
                    tracing::warn!("API accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The requests of one connection its handlers are working on: given to
/// each request (as its `ConnectInfo`) by the connection's stream.
#[derive(Clone, Default)]
struct Handling(Arc<std::sync::atomic::AtomicUsize>);

impl Handling {
    /// `request` is being handled, on the connection it came by, until
    /// the returned guard is dropped: while a handler works (a ticket's
    /// lookup may wait 30 s for its turn, then take 17.5 s) no byte moves, and the
    /// connection is not idle.
    fn begin_for(request: &Request) -> Option<HandlingOne> {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<Handling>>()
            .map(|info| info.0.begin())
    }

    fn begin(&self) -> HandlingOne {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HandlingOne(Arc::clone(&self.0))
    }

    fn any(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

/// One request being handled; done when dropped (a handler cancelled
/// by a closed connection included).
struct HandlingOne(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for HandlingOne {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Limited>> for Handling {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Limited>) -> Self {
        stream.io().handling.clone()
    }
}

/// A connection that holds its slot and closes after [`IDLE_TIMEOUT`]
/// without a byte moved while no handler works on one of its requests.
/// What it sends alone keeps it no longer than [`IDLE_TIMEOUT`] after our
/// last answer (or its start): a client that trickles a byte now and then
/// and never completes a request does not hold its slot for good.
struct LimitedStream {
    stream: TcpStream,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Reads extend the idle deadline up to here: [`IDLE_TIMEOUT`] after
    /// the last write, or the start.
    reads_until: tokio::time::Instant,
    handling: Handling,
    _permit: OwnedSemaphorePermit,
}

impl LimitedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        let until = tokio::time::Instant::now() + IDLE_TIMEOUT;
        Self {
            stream,
            idle: Box::pin(tokio::time::sleep_until(until)),
            reads_until: until,
            handling: Handling::default(),
            _permit: permit,
        }
    }

    fn read_some(&mut self) {
        let until = (tokio::time::Instant::now() + IDLE_TIMEOUT).min(self.reads_until);
        self.idle.as_mut().reset(until);
    }

    fn wrote_some(&mut self) {
        let until = tokio::time::Instant::now() + IDLE_TIMEOUT;
        self.reads_until = until;
        self.idle.as_mut().reset(until);
    }

    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.handling.any() {
            // Looked at again when the answer is written, or after
            // another idle period.
            self.wrote_some();
            let _ = self.idle.as_mut().poll(cx);
            return false;
        }
        self.idle.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection closed")
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_some();
                Poll::Ready(result)
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.wrote_some();
                Poll::Ready(result)
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server of `app` behind the connection limits, on loopback.
    async fn serve_limited(app: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limited = Limited {
            listener,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        };
        let app = app.layer(axum::middleware::from_fn(run_handler));
        tokio::spawn(async move {
            axum::serve(
                limited,
                app.into_make_service_with_connect_info::<Handling>(),
            )
            .await
        });
        addr
    }

    /// Reads until the server closes the connection; what it sent.
    async fn read_to_close(client: &mut TcpStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        let _ = client.read_to_end(&mut bytes).await;
        bytes
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_trickles_a_request_is_closed_after_the_idle_timeout() {
        let addr = serve_limited(Router::new().route("/", get(|| async { "ok" }))).await;
        let client = TcpStream::connect(addr).await.unwrap();
        let start = tokio::time::Instant::now();
        let (mut reading, mut writing) = client.into_split();
        writing
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // A header line every 5 s, never the blank line that ends them:
        // each byte read used to restart the idle timer.
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let _ = writing.write_all(b"X-a: b\r\n").await;
            }
        };
        // The server closes its side: the client's read ends.
        let closed = async {
            let mut bytes = Vec::new();
            let _ = reading.read_to_end(&mut bytes).await;
            bytes
        };
        tokio::select! {
            () = trickle => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(300)) => {
                panic!("a trickling client held its connection for 300 s")
            }
            answer = closed => assert!(answer.is_empty(), "{answer:?}"),
        }
        let held = start.elapsed();
        assert!(
            held <= IDLE_TIMEOUT + Duration::from_secs(1),
            "closed after {held:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stalls_its_body_is_closed_after_the_idle_timeout() {
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&called);
        let handler = move |body: String| async move {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            body
        };
        let addr = serve_limited(Router::new().route("/api/x", post(handler))).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let start = tokio::time::Instant::now();
        // 10 of the 100 bytes it announced, then nothing.
        client
            .write_all(b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(300)) => {
                panic!("a client stalling its body held its connection for 300 s")
            }
            // The read of the body fails: a 400, and the connection ends.
            answer = read_to_close(&mut client) => {
                let answer = String::from_utf8(answer).unwrap();
                assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
            }
        }
        let held = start.elapsed();
        assert!(
            held <= IDLE_TIMEOUT + Duration::from_secs(1),
            "closed after {held:?}"
        );
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_limit_is_refused_with_413() {
        let addr =
            serve_limited(Router::new().route("/api/x", post(|body: String| async { body }))).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        client.write_all(head.as_bytes()).await.unwrap();
        let _ = client.write_all(&vec![b'x'; MAX_BODY_BYTES + 1]).await;
        let answer = String::from_utf8(read_to_close(&mut client).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunked_body_over_the_limit_is_refused_with_413() {
        let addr =
            serve_limited(Router::new().route("/api/x", post(|body: String| async { body }))).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let head = "POST /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 << 10];
        let writing = async {
            for _ in 0..(MAX_BODY_BYTES / chunk.len() + 1) {
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                if client.write_all(&framed).await.is_err() {
                    break;
                }
            }
            let _ = client.write_all(b"0\r\n\r\n").await;
            read_to_close(&mut client).await
        };
        let answer = String::from_utf8(writing.await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_handler_outlasts_the_idle_timeout_is_answered() {
        let slow = || async {
            tokio::time::sleep(IDLE_TIMEOUT * 3).await;
            "done"
        };
        let addr = serve_limited(Router::new().route("/slow", get(slow))).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = String::from_utf8(read_to_close(&mut client).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("done"), "{answer:?}");
    }
}
