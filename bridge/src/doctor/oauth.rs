//! Steps 2 and 3: OAuth discovery as a connector does it — the RFC 9728
//! protected-resource metadata of the MCP URL, then the RFC 8414 / OpenID metadata of
//! its authorization server.

use serde_json::Value;
use url::Url;

use super::mcp::{Access, Gate};
use super::{Check, Ctx, Report, Status, clean};

/// What needs a token says so, when none was given.
const NEEDS_TOKEN: &str = "not checked: the tunnel needs credentials; pass --token (a bearer tunnel's token, or an OAuth access token for this tunnel)";

/// Steps 2 and 3, after step 1's `gate`; reports them (and step 1's line) and says
/// what step 5 may do.
pub async fn discover(ctx: &Ctx, gate: Gate, report: &mut Report) -> Access {
    let granted_or_skipped = || match ctx.token {
        Some(_) => Access::Granted { discover: None },
        None => Access::Skipped(NEEDS_TOKEN.to_owned()),
    };
    match gate {
        Gate::Unreachable(c) => {
            report.add(c);
            let why = "not checked: the URL cannot be reached";
            report.add(Check::skip(2, "prm", why));
            report.add(Check::skip(3, "as-metadata", why));
            Access::Broken("not checked: the URL cannot be reached".into())
        }
        Gate::Open(c, discover) => {
            report.add(c);
            let why = "not an OAuth tunnel: served without credentials";
            report.add(Check::skip(2, "prm", why));
            report.add(Check::skip(3, "as-metadata", why));
            Access::Granted {
                discover: Some(discover),
            }
        }
        Gate::OAuth(c, metadata_url) => {
            report.add(c);
            match fetch_prm(ctx, &metadata_url).await {
                Ok(doc) => {
                    prm_and_server(ctx, &metadata_url, "from WWW-Authenticate", &doc, report).await
                }
                Err(e) => {
                    report.add(Check::fail(
                        2,
                        "prm",
                        format!(
                            "the resource_metadata URL {} does not serve the metadata: {e}",
                            clean(&metadata_url)
                        ),
                        prm_url_fix(ctx, &metadata_url),
                    ));
                    report.add(Check::skip(
                        3,
                        "as-metadata",
                        "not checked: no protected-resource metadata",
                    ));
                }
            }
            granted_or_skipped()
        }
        Gate::Bearer => {
            match well_known_prm(ctx).await {
                Ok((url, source, doc)) => {
                    report.add(Check::warn(
                        1,
                        "discover",
                        "401 with a Bearer challenge without resource_metadata (the metadata is only at a well-known URI)",
                        "the relay names resource_metadata in its challenge: something in front of it rewrites WWW-Authenticate; let the header through",
                    ));
                    prm_and_server(ctx, &url, source, &doc, report).await;
                }
                Err(_) => {
                    report.add(Check::pass(
                        1,
                        "discover",
                        "401 with a plain Bearer challenge: the tunnel takes a static bearer token (--auth bearer)",
                    ));
                    let why = "not an OAuth tunnel (static bearer token): fine for agents, SDKs and static-header connectors; ChatGPT connectors need OAuth (the default with a public relay) or --auth none";
                    report.add(Check::skip(2, "prm", why));
                    report.add(Check::skip(3, "as-metadata", why));
                }
            }
            granted_or_skipped()
        }
        Gate::Broken(c) => {
            report.add(c);
            match well_known_prm(ctx).await {
                Ok((url, source, doc)) => {
                    prm_and_server(ctx, &url, source, &doc, report).await;
                }
                Err(tried) => {
                    let why = format!(
                        "not checked: step 1 failed, and no protected-resource metadata at {tried}"
                    );
                    report.add(Check::skip(2, "prm", why));
                    report.add(Check::skip(
                        3,
                        "as-metadata",
                        "not checked: no protected-resource metadata",
                    ));
                }
            }
            Access::Broken("not checked: step 1 failed".into())
        }
    }
}

/// Fetches a metadata document: a JSON object answered 200.
async fn fetch_json(ctx: &Ctx, url: &str) -> Result<Value, String> {
    let a = ctx.http.get_json(url).await?;
    if a.status != 200 {
        let loc = match a.header("location") {
            Some(l) if (300..400).contains(&a.status) => format!(" to {}", clean(l)),
            _ => String::new(),
        };
        return Err(format!("{}{loc}", a.status));
    }
    match a.json() {
        Some(v) if v.is_object() => Ok(v),
        _ => Err(format!("200 but not a JSON object: {}", a.snippet())),
    }
}

/// Fetches protected-resource metadata.
async fn fetch_prm(ctx: &Ctx, url: &str) -> Result<Value, String> {
    fetch_json(ctx, url).await
}

/// The RFC 9728 well-known URIs of the MCP URL: path-inserted, then root.
pub fn prm_candidates(url: &Url) -> Vec<(String, &'static str)> {
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let mut out = Vec::new();
    if !path.is_empty() {
        out.push((
            format!("{origin}/.well-known/oauth-protected-resource{path}"),
            "path-inserted well-known URI",
        ));
    }
    out.push((
        format!("{origin}/.well-known/oauth-protected-resource"),
        "root well-known URI",
    ));
    out
}

/// The metadata at the first well-known URI that serves it, or the URIs tried.
async fn well_known_prm(ctx: &Ctx) -> Result<(String, &'static str, Value), String> {
    let mut tried = Vec::new();
    for (url, source) in prm_candidates(&ctx.url) {
        match fetch_prm(ctx, &url).await {
            Ok(doc) => return Ok((url, source, doc)),
            Err(e) => tried.push(format!("{} ({e})", clean(&url))),
        }
    }
    Err(tried.join(", "))
}

/// The `--public-url` that would make the relay publish `url` as a tunnel's MCP URL:
/// the URL without its last two segments (`<tunnel>/mcp`).
pub fn public_url_for(url: &Url) -> Option<String> {
    let segs: Vec<&str> = url.path_segments()?.collect();
    let n = segs.len();
    if n < 2 || segs[n - 1] != "mcp" || segs[n - 2].is_empty() {
        return None;
    }
    let prefix = segs[..n - 2].join("/");
    let origin = url.origin().ascii_serialization();
    Some(if prefix.is_empty() {
        origin
    } else {
        format!("{origin}/{prefix}")
    })
}

/// The fix for metadata that cannot be fetched from where the challenge points.
fn prm_url_fix(ctx: &Ctx, metadata_url: &str) -> String {
    let same_origin = Url::parse(metadata_url)
        .map(|u| u.origin() == ctx.url.origin())
        .unwrap_or(false);
    match (same_origin, public_url_for(&ctx.url)) {
        (false, Some(p)) => format!(
            "the relay builds this URL from its --public-url: set it to {p}, the URL clients use"
        ),
        _ => {
            "make the proxy forward /.well-known/oauth-protected-resource/… to the relay unchanged"
                .to_owned()
        }
    }
}

/// Step 2's checks on the document, then step 3.
async fn prm_and_server(
    ctx: &Ctx,
    metadata_url: &str,
    source: &str,
    doc: &Value,
    report: &mut Report,
) {
    let servers: Vec<&str> = doc["authorization_servers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let other_origin = Url::parse(metadata_url)
        .map(|u| u.origin() != ctx.url.origin())
        .unwrap_or(true);
    let at = format!("{} ({source})", clean(metadata_url));
    let named = clean(&servers.join(", "));
    if servers.is_empty() {
        report.add(Check::fail(
            2,
            "prm",
            format!("{at} has no authorization_servers"),
            "the metadata must name the authorization server (the relay's public URL): is this the relay's metadata?",
        ));
    } else if other_origin {
        report.add(Check::warn(
            2,
            "prm",
            format!("{at} is on another origin than the MCP URL; authorization_servers {named}"),
            match public_url_for(&ctx.url) {
                Some(p) => format!("hosted clients must reach it too: set the relay's --public-url to {p}"),
                None => "hosted clients must reach it too: set the relay's --public-url to the URL clients use".to_owned(),
            },
        ));
    } else {
        report.add(Check::pass(
            2,
            "prm",
            format!("{at}: authorization_servers {named}"),
        ));
    }
    report.add(resource_check(ctx, doc));
    match servers.first() {
        Some(issuer) => server_metadata(ctx, issuer, report).await,
        None => report.add(Check::skip(
            3,
            "as-metadata",
            "not checked: no authorization server named",
        )),
    }
}

/// `resource` must be exactly the MCP URL.
fn resource_check(ctx: &Ctx, doc: &Value) -> Check {
    const ID: &str = "prm-resource";
    let want = ctx.url_text.as_str();
    let Some(resource) = doc["resource"].as_str() else {
        return Check::fail(
            2,
            ID,
            "the metadata has no resource",
            "the protected-resource metadata must name the MCP URL as resource",
        );
    };
    if resource == want {
        return Check::pass(2, ID, format!("resource = {}", clean(resource)));
    }
    let seen = format!(
        "PRM resource is {} but the URL is {}",
        clean(resource),
        clean(want)
    );
    let fix = if want.ends_with('/') && resource == want.trim_end_matches('/') {
        format!(
            "use the URL without the trailing slash: {}",
            clean(resource)
        )
    } else {
        match public_url_for(&ctx.url) {
            Some(p) => format!(
                "set the relay's --public-url to {p} (the origin and path prefix clients use), so the metadata names this URL"
            ),
            None => format!(
                "paste {} as the connector URL, or make the relay's --public-url match this URL",
                clean(resource)
            ),
        }
    };
    Check::fail(2, ID, seen, fix)
}

/// The RFC 8414 / OpenID Connect discovery URIs of an issuer, in the order clients try
/// them, plus the non-standard `<issuer>/.well-known/oauth-authorization-server`.
pub fn as_candidates(issuer: &Url) -> Vec<(String, bool)> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            (
                format!("{origin}/.well-known/oauth-authorization-server"),
                true,
            ),
            (format!("{origin}/.well-known/openid-configuration"), true),
        ]
    } else {
        vec![
            (
                format!("{origin}/.well-known/oauth-authorization-server{path}"),
                true,
            ),
            (
                format!("{origin}/.well-known/openid-configuration{path}"),
                true,
            ),
            (
                format!("{origin}{path}/.well-known/openid-configuration"),
                true,
            ),
            (
                format!("{origin}{path}/.well-known/oauth-authorization-server"),
                false,
            ),
        ]
    }
}

/// The first discovery URI of an issuer (RFC 8414).
fn tried_first(issuer: &Url) -> String {
    as_candidates(issuer)
        .into_iter()
        .next()
        .map(|(u, _)| u)
        .unwrap_or_default()
}

/// Whether a URL is https, or http on loopback.
fn https_or_loopback(u: &str) -> bool {
    match Url::parse(u) {
        Ok(u) => {
            u.scheme() == "https"
                || (u.scheme() == "http"
                    && protocol::net::is_loopback_host(u.host_str().unwrap_or("")))
        }
        Err(_) => false,
    }
}

/// Step 3: the authorization server's metadata.
async fn server_metadata(ctx: &Ctx, issuer: &str, report: &mut Report) {
    let Ok(issuer_url) = Url::parse(issuer) else {
        report.add(Check::fail(
            3,
            "as-metadata",
            format!("authorization_servers names {} (not a URL)", clean(issuer)),
            "the relay's --public-url must be an absolute https URL",
        ));
        return;
    };
    let mut tried = Vec::new();
    let mut found = None;
    for (url, standard) in as_candidates(&issuer_url) {
        match fetch_json(ctx, &url).await {
            Ok(doc) => {
                found = Some((url, standard, doc));
                break;
            }
            Err(e) => tried.push(format!("{} ({e})", clean(&url))),
        }
    }
    let Some((url, standard, doc)) = found else {
        let first = tried_first(&issuer_url);
        report.add(Check::fail(
            3,
            "as-metadata",
            format!(
                "no authorization server metadata for issuer {}: tried {}",
                clean(issuer),
                tried.join(", ")
            ),
            format!(
                "serve RFC 8414 metadata at {}: with a path prefix in --public-url, the proxy must route /.well-known/oauth-authorization-server/<prefix> to the relay's /.well-known/oauth-authorization-server",
                clean(&first)
            ),
        ));
        return;
    };
    if standard {
        report.add(Check::pass(
            3,
            "as-metadata",
            format!("{} for issuer {}", clean(&url), clean(issuer)),
        ));
    } else {
        report.add(Check::fail(
            3,
            "as-metadata",
            format!(
                "found only at {}, where RFC 8414 clients do not look (tried {})",
                clean(&url),
                tried.join(", ")
            ),
            format!(
                "make the proxy answer {} with the relay's /.well-known/oauth-authorization-server",
                clean(&tried_first(&issuer_url))
            ),
        ));
    }
    for c in server_checks(issuer, &doc) {
        report.add(c);
    }
}

/// The checks on an authorization server's metadata `doc`, fetched for `issuer`.
pub fn server_checks(issuer: &str, doc: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let got = doc["issuer"].as_str();
    out.push(match got {
        Some(i) if i == issuer => Check::pass(3, "as-issuer", format!("issuer = {}", clean(i))),
        Some(i) => Check::fail(
            3,
            "as-issuer",
            format!(
                "AS metadata issuer is {} but it was fetched for {} (PRM authorization_servers)",
                clean(i),
                clean(issuer)
            ),
            format!(
                "the issuer must be exactly {}: set the relay's --public-url to the URL clients use, and make sure no proxy rewrites the metadata",
                clean(issuer)
            ),
        ),
        None => Check::fail(
            3,
            "as-issuer",
            "the AS metadata has no issuer",
            "is this the relay's /.well-known/oauth-authorization-server? the proxy may route it elsewhere",
        ),
    });

    let methods: Vec<&str> = doc["code_challenge_methods_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push(if methods.contains(&"S256") {
        Check::pass(3, "as-pkce", "code_challenge_methods_supported includes S256")
    } else {
        Check::fail(
            3,
            "as-pkce",
            format!(
                "code_challenge_methods_supported is {}",
                clean(&doc["code_challenge_methods_supported"].to_string())
            ),
            "ChatGPT refuses an authorization server without PKCE S256: advertise code_challenge_methods_supported [\"S256\"]",
        )
    });

    out.push(
        if doc["authorization_response_iss_parameter_supported"] == true {
            Check::pass(
                3,
                "as-iss-parameter",
                "authorization_response_iss_parameter_supported: true",
            )
        } else {
            Check::warn(
                3,
                "as-iss-parameter",
                "authorization_response_iss_parameter_supported is not true",
                "without RFC 9207 iss, ChatGPT uses a per-connection callback instead of its stable redirect URI: advertise it and send iss on every authorization response",
            )
        },
    );

    let dcr = doc["registration_endpoint"].as_str();
    let cimd = doc["client_id_metadata_document_supported"] == true;
    out.push(match (dcr, cimd) {
        (None, false) => Check::fail(
            3,
            "as-registration",
            "neither registration_endpoint nor client_id_metadata_document_supported",
            "ChatGPT cannot register itself: offer dynamic client registration or client ID metadata documents",
        ),
        _ => {
            let mut ways = Vec::new();
            if let Some(r) = dcr {
                ways.push(format!("dynamic registration at {}", clean(r)));
            }
            if cimd {
                ways.push("client ID metadata documents".to_owned());
            }
            Check::pass(3, "as-registration", ways.join(", "))
        }
    });

    let mut missing = Vec::new();
    let mut plain = Vec::new();
    if !https_or_loopback(issuer) {
        plain.push(format!("issuer {}", clean(issuer)));
    }
    for (key, required) in [
        ("authorization_endpoint", true),
        ("token_endpoint", true),
        ("registration_endpoint", false),
        ("revocation_endpoint", false),
    ] {
        match doc[key].as_str() {
            None if required => missing.push(key),
            None => {}
            Some(u) if !https_or_loopback(u) => plain.push(format!("{key} {}", clean(u))),
            Some(_) => {}
        }
    }
    out.push(if !missing.is_empty() {
        Check::fail(
            3,
            "as-endpoints",
            format!("the AS metadata lacks {}", missing.join(" and ")),
            "the authorization server must publish its authorization and token endpoints",
        )
    } else if !plain.is_empty() {
        Check::fail(
            3,
            "as-endpoints",
            format!("not https: {}", plain.join(", ")),
            "every authorization server URL must be https: set the relay's --public-url to its https URL",
        )
    } else {
        Check::pass(
            3,
            "as-endpoints",
            format!(
                "authorization {}, token {}",
                clean(doc["authorization_endpoint"].as_str().unwrap_or("")),
                clean(doc["token_endpoint"].as_str().unwrap_or(""))
            ),
        )
    });
    debug_assert!(out.iter().all(|c| c.status != Status::Skip));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_known_uris() {
        let u = Url::parse("https://r.example/pre/abc/mcp").unwrap();
        let c = prm_candidates(&u);
        assert_eq!(
            c[0].0,
            "https://r.example/.well-known/oauth-protected-resource/pre/abc/mcp"
        );
        assert_eq!(
            c[1].0,
            "https://r.example/.well-known/oauth-protected-resource"
        );
        let i = Url::parse("https://r.example").unwrap();
        let c: Vec<String> = as_candidates(&i).into_iter().map(|x| x.0).collect();
        assert_eq!(
            c,
            [
                "https://r.example/.well-known/oauth-authorization-server",
                "https://r.example/.well-known/openid-configuration"
            ]
        );
        let i = Url::parse("https://r.example/pre").unwrap();
        let c: Vec<String> = as_candidates(&i).into_iter().map(|x| x.0).collect();
        assert_eq!(
            c[..3],
            [
                "https://r.example/.well-known/oauth-authorization-server/pre",
                "https://r.example/.well-known/openid-configuration/pre",
                "https://r.example/pre/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn public_url_suggestions() {
        let p = |s: &str| public_url_for(&Url::parse(s).unwrap());
        assert_eq!(
            p("https://r.example/abc/mcp").as_deref(),
            Some("https://r.example")
        );
        assert_eq!(
            p("http://127.0.0.1:9/pre/abc/mcp").as_deref(),
            Some("http://127.0.0.1:9/pre")
        );
        assert_eq!(p("https://r.example/mcp"), None);
        assert_eq!(p("https://r.example/abc/mcp/"), None);
    }

    #[test]
    fn server_metadata_checks() {
        let good = json!({
            "issuer": "https://r.example",
            "authorization_endpoint": "https://r.example/oauth/authorize",
            "token_endpoint": "https://r.example/oauth/token",
            "registration_endpoint": "https://r.example/oauth/register",
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true
        });
        assert!(
            server_checks("https://r.example", &good)
                .iter()
                .all(|c| c.status == Status::Pass)
        );
        let mut bad = good.clone();
        bad["issuer"] = json!("https://other.example");
        bad["code_challenge_methods_supported"] = json!(["plain"]);
        bad["token_endpoint"] = json!("http://r.example/oauth/token");
        bad.as_object_mut().unwrap().remove("registration_endpoint");
        bad["client_id_metadata_document_supported"] = json!(false);
        bad.as_object_mut()
            .unwrap()
            .remove("authorization_response_iss_parameter_supported");
        let c = server_checks("https://r.example", &bad);
        let status = |id: &str| c.iter().find(|c| c.id == id).unwrap().status;
        assert_eq!(status("as-issuer"), Status::Fail);
        assert_eq!(status("as-pkce"), Status::Fail);
        assert_eq!(status("as-iss-parameter"), Status::Warn);
        assert_eq!(status("as-registration"), Status::Fail);
        assert_eq!(status("as-endpoints"), Status::Fail);
        let loopback = json!({"issuer": "http://127.0.0.1:8080",
            "authorization_endpoint": "http://127.0.0.1:8080/a",
            "token_endpoint": "http://localhost:8080/t"});
        let c = server_checks("http://127.0.0.1:8080", &loopback);
        assert_eq!(
            c.iter().find(|c| c.id == "as-endpoints").unwrap().status,
            Status::Pass
        );
    }
}
