//! Attribute macros for the Gust guest SDK. Use them through `gust_sdk`:
//! `#[gust_sdk::http]` and `#[gust_sdk::event]`; see that crate for the details.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{Error, FnArg, ItemFn, ReturnType, parse_macro_input};

/// Marks `fn(Request) -> impl IntoResponse` as the function's HTTP handler and
/// exports it as the standard `wasi:http/incoming-handler`.
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    if let Err(e) = check(&attr, &func, "http", false) {
        return e.to_compile_error().into();
    }
    let name = &func.sig.ident;
    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            struct __GustHttpFunction;

            impl ::gust_sdk::__private::wasip2::exports::http::incoming_handler::Guest
                for __GustHttpFunction
            {
                fn handle(
                    request: ::gust_sdk::__private::wasip2::http::types::IncomingRequest,
                    response_out: ::gust_sdk::__private::wasip2::http::types::ResponseOutparam,
                ) {
                    ::gust_sdk::__private::http::serve(request, response_out, #name)
                }
            }

            ::gust_sdk::__private::wasip2::http::proxy::export!(__GustHttpFunction);
        };
    }
    .into()
}

/// Marks `fn(Event) -> Result<(), EventError>` as the function's event handler and
/// exports it as `gust:function/event-handler`.
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    if let Err(e) = check(&attr, &func, "event", true) {
        return e.to_compile_error().into();
    }
    let name = &func.sig.ident;
    quote! {
        #func

        #[doc(hidden)]
        const _: () = {
            struct __GustEventFunction;

            impl ::gust_sdk::__private::event::Guest for __GustEventFunction {
                fn handle(
                    event: ::gust_sdk::__wit::gust::function::types::Event,
                ) -> ::core::result::Result<(), ::gust_sdk::__wit::gust::function::types::Error> {
                    ::gust_sdk::__private::event::handle(event, #name)
                }
            }

            ::gust_sdk::__wit::__export_event_function!(__GustEventFunction);
        };
    }
    .into()
}

/// Rejects what the generated export cannot call: arguments to the attribute,
/// `async`, generics, `self`, or a parameter count other than one.
fn check(attr: &TokenStream, func: &ItemFn, kind: &str, needs_return: bool) -> Result<(), Error> {
    if !attr.is_empty() {
        return Err(Error::new(
            Span::call_site(),
            format!("#[gust_sdk::{kind}] takes no arguments"),
        ));
    }
    let sig = &func.sig;
    if let Some(token) = &sig.asyncness {
        return Err(Error::new(
            token.span,
            format!("#[gust_sdk::{kind}] functions cannot be async"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.ident.span(),
            format!("#[gust_sdk::{kind}] functions cannot be generic"),
        ));
    }
    let args: Vec<&FnArg> = sig.inputs.iter().collect();
    let expected = if kind == "http" { "Request" } else { "Event" };
    match args.as_slice() {
        [FnArg::Typed(_)] => {}
        [FnArg::Receiver(_)] => {
            return Err(Error::new(
                sig.ident.span(),
                format!("#[gust_sdk::{kind}] must be a free function, not a method"),
            ));
        }
        _ => {
            return Err(Error::new(
                sig.ident.span(),
                format!("#[gust_sdk::{kind}] functions take exactly one argument: `{expected}`"),
            ));
        }
    }
    if needs_return && matches!(sig.output, ReturnType::Default) {
        return Err(Error::new(
            sig.ident.span(),
            format!("#[gust_sdk::{kind}] functions return `Result<(), EventError>`"),
        ));
    }
    Ok(())
}
