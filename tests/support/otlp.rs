//! A real OTLP trace receiver for the tests, on free loopback ports: gRPC
//! (`TraceService/Export`) and HTTP (`POST /v1/traces`, protobuf). It keeps
//! every span it receives, flattened for assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span; ids in lower-case hex, attribute values as strings.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// OTLP span kind: 2 server, 3 client, 5 consumer.
    pub kind: i32,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub attributes: HashMap<String, String>,
    /// "grpc" or "http": how it arrived.
    pub protocol: &'static str,
}

#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Spans {
    pub fn all(&self) -> Vec<ReceivedSpan> {
        self.0.lock().expect("spans lock").clone()
    }

    fn add(&self, request: ExportTraceServiceRequest, protocol: &'static str) {
        let mut spans = self.0.lock().expect("spans lock");
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service_name = resource.get("service.name").cloned().unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        status_code: span.status.map(|s| s.code).unwrap_or_default(),
                        attributes: attributes(&span.attributes),
                        protocol,
                    });
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(text)) => text.clone(),
                Some(Value::IntValue(number)) => number.to_string(),
                Some(Value::BoolValue(flag)) => flag.to_string(),
                Some(Value::DoubleValue(number)) => number.to_string(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

struct GrpcReceiver(Spans);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn http_export(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
        spans.add(request, "http");
    }
    ExportTraceServiceResponse {
        partial_success: None,
    }
    .encode_to_vec()
}

/// The receiver: its two addresses and what it received.
pub struct OtlpReceiver {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub spans: Spans,
}

impl OtlpReceiver {
    /// Starts the receiver on its own thread and runtime, so it keeps
    /// serving while a test blocks (waiting for a process to exit, say).
    pub async fn start() -> OtlpReceiver {
        let spans = Spans::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let served = spans.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async move {
                let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let http_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addresses = (
                    grpc_listener.local_addr().expect("addr"),
                    http_listener.local_addr().expect("addr"),
                );
                let service = TraceServiceServer::new(GrpcReceiver(served.clone()));
                let app = Router::new()
                    .route("/v1/traces", post(http_export))
                    .with_state(served);
                ready_tx.send(addresses).ok();
                let grpc = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(TcpListenerStream::new(grpc_listener));
                let http = axum::serve(http_listener, app);
                let _ = tokio::join!(grpc, http);
            });
        });
        let (grpc, http) = ready_rx.await.expect("receiver started");
        OtlpReceiver { grpc, http, spans }
    }
}
