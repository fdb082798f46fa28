//! The operator console: a page and its scripts, built into the binary, served by the api role
//! at `/` (the page) and `/console/...` (its files). Everything it shows it reads from the API
//! with the key the operator signs in with; serving it needs no key, since it holds no data.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "src/roles/api/console/"]
// The README's pictures of the console live beside it but are not part of it.
#[exclude = "screenshots/*"]
struct Assets;

/// The page's own origin only: no inline script, no third party, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

pub async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve(&req, &path)
}

fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(file) = Assets::get(path) else {
        return actix_web::ResponseError::error_response(&ApiError::not_found("console file"));
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|sent| sent.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .content_type(file.metadata.mimetype())
        .insert_header((header::ETAG, etag))
        // Revalidated on every load: a new binary's console is used at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));
    if unchanged {
        return response.finish();
    }
    response.body(file.data.into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::Assets;

    /// The first page's files stay within the console's budget of 300 KB.
    #[test]
    fn the_first_page_is_small() {
        let first_page = [
            "index.html",
            "app.js",
            "app.css",
            "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css",
        ];
        let total: usize = first_page
            .iter()
            .map(|path| Assets::get(path).map_or(0, |file| file.data.len()))
            .sum();
        for path in first_page {
            assert!(Assets::get(path).is_some(), "{path} is built in");
        }
        assert!(total < 300 * 1024, "{total} bytes");
    }

    /// Every file the page names is built in.
    #[test]
    fn the_page_names_files_that_exist() {
        let page = Assets::get("index.html").map(|f| f.data.into_owned());
        let page = String::from_utf8(page.unwrap_or_default()).unwrap_or_default();
        let mut named = 0;
        for part in page.split("\"/console/").skip(1) {
            let path = part.split('"').next().unwrap_or_default();
            assert!(Assets::get(path).is_some(), "{path}");
            named += 1;
        }
        assert!(named >= 4, "the page loads its scripts and styles");
    }
}
