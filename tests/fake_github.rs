//! GitHub's documented REST behaviour, served on loopback for tests (GitHub itself cannot be
//! reached here): issues and comments (create, update, delete, list with `Link` pagination),
//! `/user` with `x-oauth-scopes`, issue search by phrase, collaborators, strong `ETag`s and `304 Not Modified` that cost no quota,
//! `x-ratelimit-*` headers on every answer, and scripted faults — a secondary-limit `403` with
//! `retry-after`, and a POST that is performed but answered too late. Every request is
//! recorded (method, path, body) so tests can assert on what reached "GitHub".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::Json;
use serde_json::{json, Value};

/// The token the fake accepts.
pub const TOKEN: &str = "ghp_faketoken0123456789";
/// The login that token belongs to.
pub const LOGIN: &str = "worker-bot";

/// A fault to inject into the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `403` "secondary rate limit" with `retry-after: N` seconds; nothing is created.
    SecondaryLimit(u64),
    /// Perform the write, then answer only after this long.
    SlowAnswer(Duration),
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The JSON body, if any.
    pub body: Value,
}

/// An issue comment as the fake keeps it.
#[derive(Debug, Clone)]
pub struct StoredComment {
    /// Its id.
    pub id: u64,
    /// The issue it is on.
    pub issue: u64,
    /// Its body.
    pub body: String,
    /// Its author.
    pub login: String,
    /// `OWNER`, `COLLABORATOR`, `NONE`, …
    pub association: String,
    /// Its version: bumps on every update (for `updated_at`).
    pub version: u64,
}

/// The fake's state.
#[derive(Debug, Default)]
pub struct Fake {
    /// Issues: (number, title, body, state, labels).
    pub issues: Vec<(u64, String, String, String, Vec<String>)>,
    /// Comments.
    pub comments: Vec<StoredComment>,
    /// Every request, in arrival order.
    pub requests: Vec<Recorded>,
    /// Requests that counted against the primary rate limit.
    pub quota_used: u64,
    /// Faults for the next writes, in order.
    pub faults: VecDeque<Fault>,
    /// Logins with push access (`/collaborators?permission=push`).
    pub collaborators: Vec<String>,
    /// Answer `/collaborators` with 403 (a token without push access may not list them).
    pub collaborators_forbidden: bool,
    /// Search finds nothing (its index lags behind writes).
    pub search_lags: bool,
    /// The primary rate limit is spent: every answer is a 403 with `x-ratelimit-remaining: 0`.
    pub exhausted: bool,
    /// When closed issues were closed (RFC 3339), by number.
    pub closed_at: std::collections::BTreeMap<u64, String>,
    next_id: u64,
}

impl Fake {
    /// Adds a comment by `login` directly (as if written earlier).
    pub fn seed_comment(&mut self, issue: u64, login: &str, association: &str, body: &str) -> u64 {
        self.next_id += 1;
        let id = 1000 + self.next_id;
        self.comments.push(StoredComment {
            id,
            issue,
            body: body.into(),
            login: login.into(),
            association: association.into(),
            version: 0,
        });
        id
    }

    /// Writes (non-GET requests) recorded so far.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests.iter().filter(|r| r.method != "GET").cloned().collect()
    }
}

/// A running fake.
#[derive(Clone)]
pub struct FakeGitHub {
    /// Its API root (`http://127.0.0.1:N`).
    pub url: String,
    /// Its state.
    pub state: Arc<Mutex<Fake>>,
}

type Shared = Arc<Mutex<Fake>>;

const LIMIT: u64 = 5000;

fn comment_json(c: &StoredComment, base: &str) -> Value {
    json!({
        "id": c.id,
        "node_id": format!("IC_{}", c.id),
        "url": format!("{base}/repos/o/r/issues/comments/{}", c.id),
        "html_url": format!("https://github.com/o/r/issues/{}#issuecomment-{}", c.issue, c.id),
        "body": c.body,
        "user": { "login": c.login, "id": 7, "type": "User" },
        "author_association": c.association,
        "created_at": "2026-11-01T10:00:00Z",
        "updated_at": format!("2026-11-01T10:{:02}:00Z", c.version % 60),
    })
}

fn issue_json(i: &(u64, String, String, String, Vec<String>), closed_at: Option<&String>) -> Value {
    json!({
        "id": 500 + i.0,
        "number": i.0,
        "title": i.1,
        "body": i.2,
        "state": i.3,
        "labels": i.4.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "user": { "login": LOGIN },
        "closed_at": if i.3 == "closed" { json!(closed_at.cloned().unwrap_or_else(|| "2020-01-01T00:00:00Z".into())) } else { Value::Null },
    })
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

/// Answers `body` with rate-limit headers and an `ETag`; a matching `If-None-Match` gets a
/// `304` that does not count against the quota (when authorised, as GitHub documents).
fn answer(
    state: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    body: Value,
    link: Option<String>,
) -> Response {
    if state.lock().unwrap().exhausted {
        let body = json!({"message": "API rate limit exceeded for user ID 7.", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"});
        let mut response = (StatusCode::FORBIDDEN, Json(body)).into_response();
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(LIMIT));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
        let reset =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
                + 60;
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        return response;
    }
    let text = body.to_string();
    let etag = format!("\"{:016x}\"", fxhash(&text));
    let mut fake = state.lock().unwrap();
    let not_modified = status == StatusCode::OK
        && headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(&etag);
    if !(not_modified && authorised(headers)) {
        fake.quota_used += 1;
    }
    let remaining = LIMIT.saturating_sub(fake.quota_used);
    drop(fake);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, [("content-type", "application/json; charset=utf-8")], text).into_response()
    };
    let h = response.headers_mut();
    h.insert("etag", HeaderValue::from_str(&etag).unwrap());
    h.insert("x-ratelimit-limit", HeaderValue::from(LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used", HeaderValue::from(LIMIT - remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(4_102_444_800u64));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    if let Some(link) = link {
        h.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    response
}

fn fxhash(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn record(state: &Shared, method: &Method, uri: &Uri, body: &Bytes) {
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    let path = uri.path_and_query().map_or(uri.path().to_string(), |p| p.to_string());
    state.lock().unwrap().requests.push(Recorded { method: method.to_string(), path, body });
}

fn unauthorised() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}))).into_response()
}

/// What every content-creating request goes through: recorded, authorised, and the next
/// scripted fault taken — a secondary limit answers instead of writing (`Err`); a slow answer
/// is returned for the handler to apply after writing.
fn write_gate(
    state: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<Fault>, Box<Response>> {
    record(state, method, uri, body);
    if !authorised(headers) {
        return Err(Box::new(unauthorised()));
    }
    match state.lock().unwrap().faults.pop_front() {
        Some(Fault::SecondaryLimit(after)) => Err(Box::new(secondary_limit(after))),
        fault => Ok(fault),
    }
}

fn secondary_limit(retry_after: u64) -> Response {
    let body = json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"});
    let mut response = (StatusCode::FORBIDDEN, Json(body)).into_response();
    response.headers_mut().insert("retry-after", HeaderValue::from(retry_after));
    response
}

impl FakeGitHub {
    /// Starts a fake on a free loopback port.
    pub async fn start() -> FakeGitHub {
        let state: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let base = url.clone();
        let app = axum::Router::new()
            .route("/user", get(|State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap| async move {
                record(&s, &method, &uri, &Bytes::new());
                if !authorised(&headers) {
                    return unauthorised();
                }
                let mut response = answer(&s, &headers, StatusCode::OK, json!({"login": LOGIN, "id": 7, "type": "User"}), None);
                response.headers_mut().insert("x-oauth-scopes", HeaderValue::from_static("repo, read:org"));
                response
            }))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                get({
                    let base = base.clone();
                    move |State(s): State<Shared>, Path((o, r, n)): Path<(String, String, u64)>, Query(q): Query<std::collections::HashMap<String, String>>, method: Method, uri: Uri, headers: HeaderMap| async move {
                        record(&s, &method, &uri, &Bytes::new());
                        let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).min(100);
                        let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
                        let all: Vec<Value> = {
                            let fake = s.lock().unwrap();
                            fake.comments.iter().filter(|c| c.issue == n).map(|c| comment_json(c, &base)).collect()
                        };
                        let pages = all.len().div_ceil(per_page).max(1);
                        let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
                        let link = (page < pages).then(|| {
                            let at = |p: usize| format!("<{base}/repos/{o}/{r}/issues/{n}/comments?per_page={per_page}&page={p}>");
                            format!("{}; rel=\"next\", {}; rel=\"last\"", at(page + 1), at(pages))
                        });
                        answer(&s, &headers, StatusCode::OK, Value::Array(items), link)
                    }
                })
                .post({
                    let base = base.clone();
                    move |State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                        let fault = match write_gate(&s, &method, &uri, &headers, &body) {
                            Ok(fault) => fault,
                            Err(refused) => return *refused,
                        };
                        let text = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["body"].as_str().map(str::to_string)).unwrap_or_default();
                        let created = {
                            let mut fake = s.lock().unwrap();
                            let id = fake.seed_comment(n, LOGIN, "OWNER", &text);
                            let c = fake.comments.iter().find(|c| c.id == id).unwrap().clone();
                            comment_json(&c, &base)
                        };
                        if let Some(Fault::SlowAnswer(delay)) = fault {
                            tokio::time::sleep(delay).await;
                        }
                        answer(&s, &headers, StatusCode::CREATED, created, None)
                    }
                }),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                patch({
                    let base = base.clone();
                    move |State(s): State<Shared>, Path((_o, _r, id)): Path<(String, String, u64)>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                        record(&s, &method, &uri, &body);
                        if !authorised(&headers) {
                            return unauthorised();
                        }
                        let text = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["body"].as_str().map(str::to_string)).unwrap_or_default();
                        let mut fake = s.lock().unwrap();
                        let Some(c) = fake.comments.iter_mut().find(|c| c.id == id) else {
                            return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
                        };
                        c.body = text;
                        c.version += 1;
                        let updated = comment_json(c, &base);
                        drop(fake);
                        answer(&s, &headers, StatusCode::OK, updated, None)
                    }
                })
                .delete(|State(s): State<Shared>, Path((_o, _r, id)): Path<(String, String, u64)>, method: Method, uri: Uri, headers: HeaderMap| async move {
                    record(&s, &method, &uri, &Bytes::new());
                    if !authorised(&headers) {
                        return unauthorised();
                    }
                    s.lock().unwrap().comments.retain(|c| c.id != id);
                    StatusCode::NO_CONTENT.into_response()
                }),
            )
            .route(
                "/search/issues",
                get(|State(s): State<Shared>, Query(q): Query<std::collections::HashMap<String, String>>, method: Method, uri: Uri, headers: HeaderMap| async move {
                    record(&s, &method, &uri, &Bytes::new());
                    // The phrase in quotes, matched against bodies — the part of GitHub's search
                    // the client relies on. `searchable` = false models the index lagging.
                    let query = q.get("q").cloned().unwrap_or_default();
                    let phrase = query.split('"').nth(1).unwrap_or_default().to_string();
                    let items: Vec<Value> = {
                        let fake = s.lock().unwrap();
                        if fake.search_lags {
                            Vec::new()
                        } else {
                            fake.issues.iter().filter(|i| !phrase.is_empty() && i.2.contains(&phrase)).map(|i| issue_json(i, fake.closed_at.get(&i.0))).collect()
                        }
                    };
                    let body = json!({"total_count": items.len(), "incomplete_results": false, "items": items});
                    answer(&s, &headers, StatusCode::OK, body, None)
                }),
            )
            .route(
                "/repos/{owner}/{repo}/collaborators",
                get(|State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap| async move {
                    record(&s, &method, &uri, &Bytes::new());
                    let (forbidden, logins) = {
                        let fake = s.lock().unwrap();
                        (fake.collaborators_forbidden, fake.collaborators.clone())
                    };
                    if forbidden {
                        let body = json!({"message": "Must have push access to view repository collaborators.", "documentation_url": "https://docs.github.com/rest/collaborators/collaborators#list-repository-collaborators"});
                        return (StatusCode::FORBIDDEN, Json(body)).into_response();
                    }
                    let users: Vec<Value> = logins.iter().map(|l| json!({"login": l, "id": 1, "type": "User", "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true}, "role_name": "write"})).collect();
                    answer(&s, &headers, StatusCode::OK, Value::Array(users), None)
                }),
            )
            .route(
                "/repos/{owner}/{repo}/issues",
                get(|State(s): State<Shared>, Query(q): Query<std::collections::HashMap<String, String>>, method: Method, uri: Uri, headers: HeaderMap| async move {
                    record(&s, &method, &uri, &Bytes::new());
                    let state_filter = q.get("state").cloned().unwrap_or_else(|| "open".into());
                    let labels: Vec<String> = q.get("labels").map(|l| l.split(',').map(str::to_string).collect()).unwrap_or_default();
                    let mut issues: Vec<Value> = {
                        let fake = s.lock().unwrap();
                        fake.issues
                            .iter()
                            .filter(|i| state_filter == "all" || i.3 == state_filter)
                            .filter(|i| labels.iter().all(|l| i.4.contains(l)))
                            .map(|i| issue_json(i, fake.closed_at.get(&i.0)))
                            .collect()
                    };
                    issues.reverse(); // newest first
                    answer(&s, &headers, StatusCode::OK, Value::Array(issues), None)
                })
                .post(|State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                    let fault = match write_gate(&s, &method, &uri, &headers, &body) {
                        Ok(fault) => fault,
                        Err(refused) => return *refused,
                    };
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let created = {
                        let mut fake = s.lock().unwrap();
                        let number = fake.issues.len() as u64 + 1;
                        let labels = request["labels"].as_array().map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
                        let issue = (number, request["title"].as_str().unwrap_or_default().to_string(), request["body"].as_str().unwrap_or_default().to_string(), "open".to_string(), labels);
                        fake.issues.push(issue.clone());
                        issue_json(&issue, None)
                    };
                    if let Some(Fault::SlowAnswer(delay)) = fault {
                        tokio::time::sleep(delay).await;
                    }
                    answer(&s, &headers, StatusCode::CREATED, created, None)
                }),
            )
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeGitHub { url, state }
    }

    /// The state, locked.
    pub fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.state.lock().unwrap()
    }

    /// The CLI pointed at this fake as a worker is configured: API URL, token, repository.
    pub fn cli(&self, env: &crate::Env, repo: &str) -> std::process::Command {
        let mut cmd = env.std_cmd();
        cmd.env("GITHUB_API_URL", &self.url).env("GH_TOKEN", TOKEN).env("GITHUB_REPOSITORY", repo);
        cmd
    }
}

/// Runs `cmd` with `args` from a multi-threaded test (the fake keeps serving meanwhile) and
/// asserts it succeeded.
pub fn run_ok(mut cmd: std::process::Command, args: &[&str]) -> std::process::Output {
    let output = tokio::task::block_in_place(|| cmd.args(args).output().unwrap());
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}
