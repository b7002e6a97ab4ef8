//! A plain `wasi:http/incoming-handler` component that knows nothing of Gust: it
//! shows that any wasi:http component runs unchanged. It answers every request
//! with `200`, `content-type: text/plain` and the body `raw wasip2: <path-with-query>`.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct RawHandler;

impl wasip2::exports::http::incoming_handler::Guest for RawHandler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
        let body = format!("raw wasip2: {path}");

        let headers = Fields::from_list(&[
            ("content-type".to_owned(), b"text/plain".to_vec()),
            (
                "content-length".to_owned(),
                body.len().to_string().into_bytes(),
            ),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(200).expect("valid status");
        let outgoing = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let stream = outgoing.write().expect("stream taken once");
        for chunk in body.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write body");
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finish body");
    }
}

wasip2::http::proxy::export!(RawHandler);
