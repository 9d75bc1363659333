//! Per-request cost of the policy phase: matching and deciding at 10, 100 and 1,000
//! routes, the step-up check (`mfa_max_age`), path normalization, and a whole reload of
//! the shipped policies.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use portcullis::pipeline::normalize::canonical_path;
use portcullis::policy::{PolicySet, Principal};

/// A policy of `n` routes shaped like a real API: resources with collection and item
/// routes, a few catch-alls, roles and owners.
fn policy(n: usize) -> String {
    let mut s = String::from("upstream = \"api\"\n");
    for i in 0..n {
        let (path, extra) = match i % 5 {
            0 => (format!("/api/res{i}"), "public = true"),
            1 => (format!("/api/res{i}/{{id}}"), "roles = [\"reader\", \"admin\"]"),
            2 => (
                format!("/api/res{i}/{{id}}/items"),
                "roles = [\"customer\"]\nowner = \"id\"",
            ),
            3 => (
                format!("/api/res{i}/{{id}}/items/{{item}}"),
                "roles = [\"admin\"]\nmfa = true",
            ),
            _ => (format!("/api/res{i}/{{*rest}}"), "roles = [\"admin\"]"),
        };
        s.push_str(&format!(
            "[[route]]\nname = \"r{i}\"\nmethods = [\"GET\", \"PUT\"]\npath = \"{path}\"\n{extra}\n"
        ));
    }
    s
}

fn matching(c: &mut Criterion) {
    let caller = Principal {
        id: "u-1".into(),
        email: "a@b.c".into(),
        roles: vec!["customer".into()],
        mfa: false,
        auth_time: 0,
        attributes: Default::default(),
    };
    let mut group = c.benchmark_group("decide");
    for n in [10, 100, 1000] {
        let set = PolicySet::from_source(Path::new("bench.toml"), &policy(n), &|_| true).unwrap();
        // A route in the middle of the set, matched with an owner check.
        let path = format!("/api/res{}/u-1/items", (n / 2) / 5 * 5 + 2);
        group.bench_with_input(BenchmarkId::new("owner route", n), &path, |b, path| {
            b.iter(|| black_box(set.decide(&Method::GET, black_box(path), Some(&caller))))
        });
        group.bench_with_input(BenchmarkId::new("no route (404)", n), &n, |b, _| {
            b.iter(|| black_box(set.decide(&Method::GET, black_box("/api/nothing/here"), None)))
        });
    }
    group.finish();
}

/// The step-up check: the same role route decided with and without `mfa_max_age`, for a
/// caller who passed TOTP a minute ago.
fn step_up(c: &mut Criterion) {
    let now = 1_700_000_000;
    let caller = Principal {
        id: "u-1".into(),
        email: "a@b.c".into(),
        roles: vec!["admin".into()],
        mfa: true,
        auth_time: now - 60,
        attributes: Default::default(),
    };
    let route = |extra: &str| {
        format!(
            "upstream = \"api\"\n[[route]]\nname = \"transfer\"\nmethods = [\"POST\"]\npath = \"/api/transfers/{{id}}\"\nroles = [\"admin\"]\n{extra}\n"
        )
    };
    let mut group = c.benchmark_group("step-up");
    for (name, extra) in [
        ("role route", ""),
        ("role route, mfa_max_age = 5m", "mfa_max_age = \"5m\""),
    ] {
        let set = PolicySet::from_source(Path::new("bench.toml"), &route(extra), &|_| true).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| black_box(set.decide_at(&Method::POST, black_box("/api/transfers/t-9"), Some(&caller), now)))
        });
    }
    group.finish();
}

fn normalizing(c: &mut Criterion) {
    c.bench_function("normalize /api/customers/u-42/orders", |b| {
        b.iter(|| black_box(canonical_path(black_box("/api/customers/u-42/orders"))))
    });
    c.bench_function("normalize with escapes", |b| {
        b.iter(|| black_box(canonical_path(black_box("/api/caf%C3%A9/%70roducts/a%20b"))))
    });
}

fn reloading(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    c.bench_function("reload: load, validate and compile policies/", |b| {
        b.iter(|| black_box(PolicySet::load_dir_with(&dir, &|_| true).unwrap()))
    });
}

criterion_group!(benches, matching, step_up, normalizing, reloading);
criterion_main!(benches);
