//! The web UI: three static files compiled into georepd (no Node.js to build or run it),
//! served at `/` without the token. Everything the pages show they read from the REST API
//! (`crate::api`) with the token the operator logs in with, kept by the browser for its
//! session only; without it the page shows only the login form.
//!
//! The assets are in `src/ui/assets/`: `index.html` (the page's frame), `app.css` and
//! `app.js` (plain JavaScript, no library: a hash router, the views, an SVG graph and the
//! event stream read through `fetch`). `docs/ui.md` shows the views.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its bytes, type, and an ETag made from its content.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    mime: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { name: "index.html", body: include_bytes!("assets/index.html"), mime: "text/html; charset=utf-8" },
    Asset { name: "app.css", body: include_bytes!("assets/app.css"), mime: "text/css; charset=utf-8" },
    Asset { name: "app.js", body: include_bytes!("assets/app.js"), mime: "text/javascript; charset=utf-8" },
    Asset { name: "favicon.svg", body: include_bytes!("assets/favicon.svg"), mime: "image/svg+xml" },
];

/// The page may load only its own files and talk only to its own server; it may not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `/` and `/ui/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve("index.html", &h) }))
        .route("/ui/{file}", get(|Path(file): Path<String>, h: HeaderMap| async move { serve(&file, &h) }))
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((i, a)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    // Each file's tag is its content's hash, made once.
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS
        .get_or_init(|| ASSETS.iter().map(|a| format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(a.body))).collect());
    let tag = &tags[i];
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    // Always asked again, answered 304 while unchanged: a new georepd's UI is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == tag.as_str()) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    (h, a.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_and_revalidated() {
        let r = serve("app.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let tag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
