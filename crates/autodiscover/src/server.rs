//! The service on the wire: HTTP/1.1 on the connections a node's SIP listener hands over when
//! the client asks for `http/1.1` by ALPN, so autodiscover shares port 443 with clients' SIP.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use siplab_transport::{AlpnHandler, ConnMeta};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::directory::{Directory, Reply};
use crate::document::MEDIA_TYPE;

/// The ALPN protocol that selects the service on a shared listener.
pub const ALPN: &[u8] = b"http/1.1";

/// A request's head must arrive within this, or the connection is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// No connection lives longer: each carries one request (no keep-alive), so anything
/// longer is a client that stalls.
const CONNECTION_TIME: Duration = Duration::from_secs(30);

/// What a node's transport calls with each connection its listener hands over by ALPN.
pub fn handler(directory: Arc<Directory>) -> AlpnHandler {
    Arc::new(move |tls, meta| Box::pin(serve(tls, meta, directory.clone())))
}

/// Serves one request on `tls`, answering for the client its certificate names.
async fn serve(tls: TlsStream<TcpStream>, meta: ConnMeta, directory: Arc<Directory>) {
    let span = info_span!("autodiscover", iface = %meta.interface, peer = %meta.peer, who = %meta.identity.describe());
    let caller = meta.identity.sip_aor().map(str::to_owned);
    let service = service_fn(move |request: Request<Incoming>| {
        let reply = directory.answer(&request, caller.as_deref());
        info!(uri = %request.uri(), status = reply.status.as_u16(), "answered");
        std::future::ready(Ok::<_, Infallible>(response(reply)))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(tls), service);
    async {
        match tokio::time::timeout(CONNECTION_TIME, connection).await {
            Ok(Ok(())) => debug!("connection done"),
            Ok(Err(error)) => debug!(%error, "connection failed"),
            Err(_) => warn!("connection outlived its time; closed"),
        }
    }
    .instrument(span)
    .await
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let body = match reply.document.map(|d| serde_json::to_vec(&d)).transpose() {
        Ok(body) => body,
        Err(error) => {
            warn!(%error, "document does not serialize");
            return status_only(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let mut response = status_only(reply.status);
    if let Some(body) = body {
        *response.body_mut() = Full::new(Bytes::from(body));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    }
    response
}

fn status_only(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
