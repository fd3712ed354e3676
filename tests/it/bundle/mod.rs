//! The monitoring bundle (`deploy/`, `grafana/`, docs): rules, dashboards
//! and manifests checked statically and end to end (see `support::bundle`).

mod dashboards;
mod e2e;
mod manifests;
mod rules;
