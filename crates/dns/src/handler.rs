//! One DNS request in, one response out: hickory's transport hands us the request with the
//! querier's address, [`Directory`] decides, and this turns the decision into a message.
//!
//! The handler is hickory's `RequestHandler` rather than a `Catalog` of zone handlers,
//! because a zone handler never sees who asks, and who asks is the whole point of a view.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use crate::zones::{Answer, Directory};

/// Answers every query from the view of the querier's source address (or, for a source in
/// no lab network, of the listener's own address).
pub(crate) struct ViewHandler {
    directory: Arc<Directory>,
    listener: IpAddr,
}

impl ViewHandler {
    pub(crate) fn new(directory: Arc<Directory>, listener: IpAddr) -> ViewHandler {
        ViewHandler {
            directory,
            listener,
        }
    }

    /// The decision for a request: only standard queries of class IN with exactly one
    /// question are looked up; anything else is answered with an error code, and why.
    fn decide(&self, request: &Request) -> Result<Answer, (ResponseCode, &'static str)> {
        if request.metadata.op_code != OpCode::Query {
            return Err((ResponseCode::NotImp, "not a standard query"));
        }
        let Ok(info) = request.request_info() else {
            return Err((ResponseCode::FormErr, "not exactly one question"));
        };
        if info.query.query_class() != DNSClass::IN {
            return Err((ResponseCode::Refused, "not class IN"));
        }
        Ok(self
            .directory
            .answer(request.src().ip(), self.listener, info.query))
    }
}

#[async_trait::async_trait]
impl RequestHandler for ViewHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // RFC 6891: a query with OPT gets an OPT back, our payload size at least 512.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let (answers, soa, additionals): (Vec<Record>, Vec<Record>, Vec<Record>) =
            match self.decide(request) {
                Ok(Answer::Found {
                    answers,
                    additionals,
                }) => {
                    metadata.authoritative = true;
                    (answers, Vec::new(), additionals)
                }
                Ok(Answer::Negative { code, soa }) => {
                    metadata.authoritative = true;
                    metadata.response_code = code;
                    (Vec::new(), vec![*soa], Vec::new())
                }
                Ok(Answer::Refused(why)) => {
                    metadata.response_code = ResponseCode::Refused;
                    debug!(src = %request.src(), why, "refused");
                    (Vec::new(), Vec::new(), Vec::new())
                }
                Err((code, why)) => {
                    metadata.response_code = code;
                    debug!(src = %request.src(), why, "not answered");
                    (Vec::new(), Vec::new(), Vec::new())
                }
            };
        debug!(
            src = %request.src(),
            query = ?request.queries.queries().first().map(|q| q.original()),
            code = %metadata.response_code,
            answers = answers.len(),
            "answered"
        );
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            [],
            soa.iter(),
            additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(src = %request.src(), %error, "cannot send DNS response");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
