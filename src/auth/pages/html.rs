//! What every page shares: the layout, the stylesheet, and the responses (HTML with the
//! page headers, `303 See Other` with cookies).

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{Response, StatusCode};
use maud::{html, Markup, DOCTYPE};

use crate::upstream::body::GatewayBody;

/// Nothing from elsewhere: styles from the gateway, images only inline (the QR code),
/// forms only to the gateway, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub use crate::auth::browser::STYLESHEET;

/// The stylesheet, compiled in.
const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem 2.25rem;border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:0 0 1.25rem}
label{display:block;margin:.9rem 0 .3rem;font-weight:600;font-size:.9rem}
input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;padding:.55rem .7rem;border:1px solid #c5cad3;border-radius:6px;font-size:1rem}
button,.button{display:inline-block;margin-top:1.25rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#2851c8;color:#fff;font-size:1rem;cursor:pointer;text-decoration:none}
.error{background:#fdecec;color:#8a1c1c;padding:.6rem .8rem;border-radius:6px}
.note{background:#eef3fd;padding:.6rem .8rem;border-radius:6px}
.links{margin-top:1.5rem;font-size:.9rem}
.links a{margin-right:1rem}
code,.secret{font-family:ui-monospace,monospace;word-break:break-all}
ul.codes{columns:2;font-family:ui-monospace,monospace}
img.qr{display:block;margin:1rem auto;width:220px;height:220px;image-rendering:pixelated}
";

/// A page: the layout around `body`, titled `title`.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portcullis" }
                link rel="stylesheet" href=(STYLESHEET);
            }
            body {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The message a form is shown again with, if any.
pub fn message(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.error role="alert" { (text) }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The headers every page carries, and the cookies to set.
fn headers(resp: &mut Response<GatewayBody>, cookies: &[String]) {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(SET_COOKIE, v);
        }
    }
}

/// A page answered with `status`, setting `cookies`.
pub fn respond(status: StatusCode, markup: Markup, cookies: &[String]) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(markup.into_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers(&mut resp, cookies);
    resp
}

/// `303 See Other` to `location` (a path on this gateway), setting `cookies`.
pub fn see_other(location: &str, cookies: &[String]) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/auth/account"));
    resp.headers_mut().insert(LOCATION, location);
    headers(&mut resp, cookies);
    resp
}

/// `204 No Content`, setting `cookies` (the JSON API's answers with a cookie session).
pub fn no_content(cookies: &[String]) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    headers(&mut resp, cookies);
    resp
}

/// The stylesheet, cacheable for an hour.
pub fn stylesheet() -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(CSS));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    resp
}
