//! Password attempts are reserved before they are checked, and bounded in concurrency:
//! concurrent wrong operator passwords (consent page) and sign-ins (status page) from one
//! address are evaluated at most up to the limit, the rest refused at once; a burst from a
//! hundred addresses keeps the relay's memory bounded (Argon2 verifications run a few at a
//! time).

use std::net::Ipv4Addr;

use e2e::http::form;
use e2e::process::proc_kib;
use e2e::relay::OPERATOR_PASSWORD;

use crate::attacker::{FORM, PASSWORD_LIMIT, Setup, burst, loopback, runtime, tally};

/// The headers of a form POST with this cookie.
fn form_with_cookie(cookie: &str) -> Vec<(String, String)> {
    vec![
        (FORM.0.into(), FORM.1.into()),
        ("Cookie".into(), cookie.into()),
    ]
}

/// Thirty wrong operator passwords sent at once from one address on a consent page, and
/// thirty wrong sign-ins at once on the status page: at most the limit is evaluated (403),
/// every other attempt is refused at once (429), and the right password is refused too
/// once the limit is used up, while another address still signs in.
#[test]
fn concurrent_wrong_passwords_are_not_all_evaluated() {
    let (s, _bridge, rt) = Setup::owner_serving("pw-desk");
    let client = s.register(&rt, "pw-client");
    let page = s.consent(&rt, &client, "pw-desk");

    let answers = burst(&rt, s.port, 30, &page.path, |i| {
        let body = form(&[
            ("csrf", &page.csrf),
            ("action", "approve"),
            ("password", &format!("wrong-{i}")),
        ]);
        (Ipv4Addr::LOCALHOST, form_with_cookie(&page.cookie), body)
    });
    let t = tally(&answers);
    let evaluated = t.get(&403).copied().unwrap_or(0);
    eprintln!("consent page, 30 concurrent wrong passwords: {t:?}");
    assert!(
        evaluated <= PASSWORD_LIMIT,
        "{evaluated} of 30 concurrent wrong passwords were evaluated: {t:?}"
    );
    assert!(evaluated >= 1, "{t:?}");
    assert_eq!(
        evaluated + t.get(&429).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        30,
        "{t:?}"
    );
    // More wrong passwords, one at a time, until the limit: five evaluated in all.
    let wrong = form(&[
        ("csrf", &page.csrf),
        ("action", "approve"),
        ("password", "wrong-again"),
    ]);
    let headers = [FORM, ("Cookie", page.cookie.as_str())];
    let mut total = evaluated;
    for _ in 0..2 * PASSWORD_LIMIT {
        let r = s.post(&rt, Ipv4Addr::LOCALHOST, &page.path, &headers, &wrong);
        match r.status {
            403 => total += 1,
            429 if r.body.contains("Too many wrong passwords") => break,
            other => panic!("HTTP {other}: {}", r.body),
        }
    }
    assert_eq!(total, PASSWORD_LIMIT, "wrong passwords evaluated in all");
    // The limit holds for the right password too, from that address.
    let right = form(&[
        ("csrf", &page.csrf),
        ("action", "approve"),
        ("password", OPERATOR_PASSWORD),
    ]);
    let r = s.post(&rt, Ipv4Addr::LOCALHOST, &page.path, &headers, &right);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many wrong passwords"), "{}", r.body);

    // The status page's sign-in, from another address.
    let (login_cookie, csrf) = s.login_form(&rt);
    let from = loopback(0);
    let answers = burst(&rt, s.port, 30, "/status", |i| {
        let body = form(&[
            ("op", "login"),
            ("csrf", &csrf),
            ("secret", &format!("wrong-{i}")),
        ]);
        (from, form_with_cookie(&login_cookie), body)
    });
    let t = tally(&answers);
    eprintln!("status page, 30 concurrent wrong sign-ins: {t:?}");
    let evaluated = t.get(&403).copied().unwrap_or(0);
    assert!(
        evaluated <= PASSWORD_LIMIT,
        "{evaluated} of 30 concurrent wrong sign-ins were evaluated: {t:?}"
    );
    assert_eq!(
        evaluated + t.get(&429).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        30,
        "{t:?}"
    );
    // Another address signs in with the password.
    let body = form(&[
        ("op", "login"),
        ("csrf", &csrf),
        ("secret", OPERATOR_PASSWORD),
    ]);
    let r = s.post(
        &rt,
        loopback(1),
        "/status",
        &[FORM, ("Cookie", &login_cookie)],
        &body,
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

/// A hundred sign-ins at once, each from its own address: the relay checks a few passwords
/// at a time (the others are told to retry), so its memory stays bounded.
#[test]
fn a_burst_of_password_checks_keeps_memory_bounded() {
    let s = Setup::start(&["owner"]);
    let rt = runtime();
    let pid = s.relay.relay().proc.pid();
    let (login_cookie, csrf) = s.login_form(&rt);
    let sign_in = |from: Ipv4Addr, secret: String| {
        let body = form(&[("op", "login"), ("csrf", &csrf), ("secret", &secret)]);
        (from, form_with_cookie(&login_cookie), body)
    };
    // One check first, so the baseline includes what a single verification leaves.
    let warm = burst(&rt, s.port, 1, "/status", |_| {
        sign_in(loopback(200), "warm-up".into())
    })
    .remove(0);
    assert_eq!(warm.status, 403, "{}", warm.body);
    let rss_before = proc_kib(pid, "VmRSS");
    let peak_before = proc_kib(pid, "VmHWM");
    let answers = burst(&rt, s.port, 100, "/status", |i| {
        sign_in(loopback(i), format!("wrong-{i}"))
    });
    let t = tally(&answers);
    let rss_after = proc_kib(pid, "VmRSS");
    let peak_after = proc_kib(pid, "VmHWM");
    eprintln!(
        "burst of 100 sign-ins: {t:?}; VmRSS {rss_before} → {rss_after} KiB, VmHWM \
         {peak_before} → {peak_after} KiB"
    );
    assert!(t.get(&403).copied().unwrap_or(0) >= 1, "{t:?}");
    assert_eq!(
        t.get(&403).copied().unwrap_or(0) + t.get(&503).copied().unwrap_or(0),
        100,
        "every attempt is checked or told to retry: {t:?}"
    );
    let growth_mib = peak_after.saturating_sub(peak_before) / 1024;
    assert!(
        growth_mib < 150,
        "the relay's peak memory grew by {growth_mib} MiB during the burst"
    );
    assert!(
        rss_after.saturating_sub(rss_before) / 1024 < 150,
        "the relay kept {} MiB after the burst",
        rss_after.saturating_sub(rss_before) / 1024
    );
}
