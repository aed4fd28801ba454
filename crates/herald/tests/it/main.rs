//! Integration tests: the real server on 127.0.0.1:0, real HTTP, SSE, WebSocket
//! and long-poll clients. One test binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod api;
mod auth;
mod backpressure;
mod bench_smoke;
mod classroom;
mod classroom_access;
mod classroom_cluster;
mod classroom_groups;
mod classroom_live;
mod classroom_log;
mod classroom_polls;
mod classroom_qa;
mod classroom_slides;
mod cli;
mod cluster;
mod cors;
mod hostile;
mod idempotency;
mod isolation;
mod longpoll;
mod malformed;
mod ops;
mod postgres_store;
mod presence;
mod races;
mod refusals;
mod restart;
mod resume;
mod secrets;
mod shutdown;
mod smoke;
mod sse;
mod support;
mod tokens;
mod web;
mod ws;
