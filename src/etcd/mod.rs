//! etcd: the JSON API client used to check and change a running cluster.

pub mod api;
