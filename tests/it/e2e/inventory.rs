//! Inventory edits reach the gauges; readiness needs an inventory.

use std::collections::BTreeSet;

use pharox_testkit::{FakeProxy, ProxyBehavior, ThreadTarget};

use crate::support::exporter::*;
use crate::support::process::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_removed_from_the_inventory_disappear_from_the_gauges() {
    let target = ThreadTarget::http();
    let a = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("a");
    let b = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("b");
    let c = FakeProxy::http(ProxyBehavior::healthy()).await.expect("c");
    let d = FakeProxy::http(ProxyBehavior::healthy()).await.expect("d");
    let dir = ServerDir::new("exporter-inventory");
    let inv = dir.join("inventory.yaml");
    let ea = || entry(format!("socks5://{}", a.addr()), "pa", "x");
    let eb = || entry(format!("socks5://{}", b.addr()), "pb", "y");
    write_atomic(
        &inv,
        &inventory_yaml(&[ea(), eb(), entry(format!("http://{}", c.addr()), "pb", "z")]),
    );
    let ex = Exporter::start(dir.path(), &base_args(&inv, &target.url("/"))).await;
    let m = ex
        .wait_for("three active proxies", |m| {
            m.sum("pharox_proxies", &[("status", "active")]) == 3.0
        })
        .await;
    assert_eq!(
        m.label_values("pharox_proxies", "provider", &[("pool", "pb")]),
        BTreeSet::from([s("y"), s("z")])
    );

    // Drop pb/z, add pc/w.
    write_atomic(
        &inv,
        &inventory_yaml(&[ea(), eb(), entry(format!("http://{}", d.addr()), "pc", "w")]),
    );
    let m = ex
        .wait_for("the new inventory in the gauges", |m| {
            m.series("pharox_proxies", &[("provider", "z")]).is_empty()
                && m.sum("pharox_proxies", &[("pool", "pc"), ("status", "active")]) == 1.0
        })
        .await;
    assert!(m
        .series("pharox_proxies_unchecked", &[("provider", "z")])
        .is_empty());
    assert_eq!(m.value("pharox_exporter_inventory_proxies"), 3.0);
    assert_eq!(
        m.sum("pharox_proxies", &[("pool", "pb")]),
        1.0,
        "pb keeps only y\n{}",
        m.text
    );
    assert_eq!(m.sum("pharox_proxies", &[("status", "active")]), 3.0);
    // The history of the removed proxy stays in its counters.
    assert!(m.sum("pharox_checks_total", &[("provider", "z")]) >= 1.0);
    let (_, status) = ex.get("/api/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let pools: BTreeSet<String> = v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .filter_map(|p| p["pool"].as_str().map(String::from))
        .collect();
    assert_eq!(
        pools,
        BTreeSet::from([s("pa"), s("pb"), s("pc")]),
        "{status}"
    );
    assert_eq!(v["totals"]["total"], 3, "{status}");

    // A broken inventory file keeps the previous inventory and is counted.
    write_atomic(&inv, "- url: [not, a, url\n");
    let m = ex
        .wait_for("the read error counted", |m| {
            m.sum(
                "pharox_exporter_inventory_errors_total",
                &[("kind", "read")],
            ) >= 1.0
        })
        .await;
    assert_eq!(
        m.value("pharox_exporter_inventory_proxies"),
        3.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_inventory_is_loaded() {
    let target = ThreadTarget::http();
    let live = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let dir = ServerDir::new("exporter-ready");
    let inv = dir.join("inventory.yaml"); // not there yet
    let ex =
        Exporter::start_until(dir.path(), &base_args(&inv, &target.url("/")), "/-/healthy").await;
    ex.wait_for("two failed inventory reads", |m| {
        m.sum(
            "pharox_exporter_inventory_errors_total",
            &[("kind", "read")],
        ) >= 2.0
    })
    .await;
    let (code, body) = ex.get("/-/ready").await;
    assert_eq!(
        code,
        503,
        "ready without an inventory: {body}\n{}",
        ex.log_tail()
    );

    // The file appears: the next sweep loads it, and the exporter is ready.
    write_atomic(
        &inv,
        &inventory_yaml(&[entry(format!("socks5://{}", live.addr()), "p1", "alpha")]),
    );
    ex.wait_for("the proxy checked", |m| {
        m.sum("pharox_proxies", &[("status", "active")]) == 1.0
    })
    .await;
    assert_eq!(ex.get("/-/ready").await.0, 200);
}
