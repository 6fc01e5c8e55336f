//! `GET /ui`: the web dashboard. Three static files (`proxy/ui/`) are compiled into the binary,
//! so the page needs nothing from outside: no CDN, no build step but cargo. The page itself holds
//! no data and needs no token; it signs in with the admin token (kept in the tab's
//! `sessionStorage`, sent as a bearer header) and reads and acts only through the admin routes
//! the CLI uses (`/system/*`, `/store/*`) and the public `/functions/*`, so it adds no authority.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this origin
//! only: no inline script, no `eval`; no framing), `X-Content-Type-Options: nosniff` and no
//! referrer. The script renders every string from the platform as text (`textContent`), never as
//! HTML.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// The policy every `/ui` answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The files the page is made of, with their content types: what the page weight counts.
pub const ASSETS: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", INDEX),
    ("app.js", "text/javascript; charset=utf-8", SCRIPT),
    ("app.css", "text/css; charset=utf-8", STYLE),
];

/// `GET /ui` and `GET /ui/`.
pub async fn index() -> Response {
    asset("index.html")
}

/// `GET /ui/<file>`.
pub async fn file(Path(file): Path<String>) -> Response {
    asset(&file)
}

fn asset(file: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return rfa_io::ProblemResponse(rfa_wire::Problem::not_found(format!(
            "the dashboard has no file '{file}': open /ui"
        )))
        .into_response();
    };
    let mut response = (StatusCode::OK, *body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assets_carry_their_type_and_the_policy() {
        for (name, content_type, _) in ASSETS {
            let r = asset(name);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], content_type);
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_fetches_nothing_from_outside() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        for handler in [" onclick=", " onload=", " onsubmit=", " onerror="] {
            assert!(!INDEX.contains(handler), "{handler}");
        }
        for (name, _, body) in ASSETS {
            // The SVG namespace is a name the script passes to createElementNS, never fetched.
            let body = body.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{name}"
            );
            assert!(
                !body.contains("innerHTML") && !body.contains("eval("),
                "{name}"
            );
        }
    }
}
