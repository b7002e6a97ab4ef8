//! From `gust.toml` text to a validated [`App`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManifestError;
use crate::model::*;
use crate::route::{route_shape, validate_route};
use crate::units::{parse_duration, parse_size};

/// The manifest's file name inside an app folder.
pub const MANIFEST_FILE: &str = "gust.toml";

/// Reads and validates the app in `dir` (the folder holding `gust.toml`).
pub fn load_app(dir: &Path) -> Result<App, ManifestError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path).map_err(|e| ManifestError {
        file: manifest_path.clone(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read the manifest: {e}"),
        fix: format!(
            "run gust in an app folder, or create one with `gust new http-rust {}`",
            dir.display()
        ),
    })?;
    let source = manifest_text(&manifest_path, bytes)?;
    parse_app(&dir, &manifest_path, &source)
}

/// The manifest's bytes as text; bytes that are not UTF-8 are an error
/// located at the first of them.
fn manifest_text(file: &Path, bytes: Vec<u8>) -> Result<String, ManifestError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        ManifestError::at(
            file,
            &before,
            Some(valid..valid),
            "",
            "the manifest is not UTF-8 text",
            "save gust.toml as UTF-8 (TOML files are always UTF-8)",
        )
    })
}

/// Validates manifest `source` for the app in `dir`. Sources are resolved
/// against `dir` and must exist.
pub fn parse_app(dir: &Path, manifest_path: &Path, source: &str) -> Result<App, ManifestError> {
    Parser {
        dir,
        file: manifest_path,
        source,
    }
    .parse()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: Option<Spanned<RawAppSection>>,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default, rename = "function")]
    functions: Vec<Spanned<RawFunction>>,
    /// Interpreted by the gateway (`gust-gateway`); kept as written.
    #[serde(default)]
    gateway: Option<toml::Table>,
    /// `[[static]]` folders served as files.
    #[serde(default, rename = "static")]
    statics: Vec<Spanned<crate::static_mount::RawStatic>>,
    #[serde(default)]
    sse: Vec<Spanned<crate::sse::RawSse>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppSection {
    name: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: Spanned<String>,
    source: Option<Spanned<String>>,
    trigger: Option<Spanned<RawTrigger>>,
    #[serde(default)]
    bindings: BTreeMap<Spanned<String>, Spanned<RawBinding>>,
    retry: Option<Spanned<RawRetry>>,
    limits: Option<Spanned<RawLimits>>,
    outbound_http: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    http: Option<Spanned<RawHttp>>,
    timer: Option<toml::Table>,
    queue: Option<toml::Table>,
    topic: Option<toml::Table>,
    blob: Option<toml::Table>,
    changefeed: Option<toml::Table>,
    stream: Option<toml::Table>,
    mqtt: Option<toml::Table>,
    workflow: Option<toml::Table>,
    activity: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    route: Spanned<String>,
    methods: Option<Vec<Spanned<String>>>,
    auth: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    kv: Option<String>,
    sql: Option<String>,
    topic: Option<String>,
    queue: Option<String>,
    stream: Option<String>,
    blob: Option<String>,
    table: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    strategy: Option<Spanned<String>>,
    max_attempts: Option<Spanned<u32>>,
    min: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<u32>>,
    max_body: Option<Spanned<String>>,
}

pub(crate) struct Parser<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) file: &'a Path,
    pub(crate) source: &'a str,
}

impl Parser<'_> {
    pub(crate) fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ManifestError {
        ManifestError::at(self.file, self.source, span, key, message, fix)
    }

    fn parse(&self) -> Result<App, ManifestError> {
        let raw: RawManifest = toml::from_str(self.source).map_err(|e| {
            let message = e.message().trim().to_string();
            let fix = toml_fix(&message);
            self.err(e.span(), "", message, fix)
        })?;

        let app = raw.app.ok_or_else(|| {
            self.err(
                Some(0..0),
                "app",
                "missing `[app]` section",
                "start the file with `[app]` and `name = \"my-app\"`",
            )
        })?;
        let name = app.get_ref().name.clone();
        check_name(name.get_ref()).map_err(|why| {
            self.err(
                Some(name.span()),
                "app.name",
                format!("app name `{}` {why}", name.get_ref()),
                "use lowercase letters, digits and `-`, e.g. `my-app`",
            )
        })?;

        let variables = self.variables(raw.variables)?;
        let mut functions: Vec<(Function, Range<usize>)> = Vec::new();
        for (index, raw_fn) in raw.functions.into_iter().enumerate() {
            let span = raw_fn.span();
            let function = self.function(index, raw_fn.into_inner(), span.clone())?;
            if let Some((first, _)) = functions.iter().find(|(f, _)| f.name == function.name) {
                return Err(self.err(
                    Some(span),
                    format!("function[{index}].name"),
                    format!("two functions are named `{}`", first.name),
                    "give every [[function]] a unique name",
                ));
            }
            self.check_route_clash(index, &function, &span, &functions)?;
            functions.push((function, span));
        }

        let functions: Vec<Function> = functions.into_iter().map(|(f, _)| f).collect();
        let sse = crate::sse::parse_sse(raw.sse, &functions, &|span, key, message, fix| {
            self.err(span, key, message, fix)
        })?;
        Ok(App {
            dir: self.dir.to_path_buf(),
            manifest_path: self.file.to_path_buf(),
            name: name.into_inner(),
            variables,
            functions,
            gateway: raw.gateway,
            statics: self.statics(raw.statics)?,
            sse,
        })
    }

    fn variables(
        &self,
        raw: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    ) -> Result<BTreeMap<String, Variable>, ManifestError> {
        let mut out = BTreeMap::new();
        for (name, value) in raw {
            let key = format!("variables.{}", name.get_ref());
            let valid = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(self.err(
                    Some(name.span()),
                    key,
                    format!("variable name `{}` is not valid", name.get_ref()),
                    "use lowercase letters, digits and `_`, e.g. `api_token`",
                ));
            }
            let span = value.span();
            let variable = match value.into_inner() {
                toml::Value::String(s) => Variable {
                    default: Some(s),
                    ..Variable::default()
                },
                toml::Value::Table(table) => {
                    let mut v = Variable::default();
                    for (k, val) in table {
                        match (k.as_str(), val) {
                            ("default", toml::Value::String(s)) => v.default = Some(s),
                            ("required", toml::Value::Boolean(b)) => v.required = b,
                            ("secret", toml::Value::Boolean(b)) => v.secret = b,
                            (other, _) => {
                                return Err(self.err(
                                    Some(span),
                                    format!("{key}.{other}"),
                                    format!("unexpected `{other}` in variable `{}`", name.get_ref()),
                                    "a variable takes `default = \"...\"`, `required = true|false` and `secret = true|false`",
                                ));
                            }
                        }
                    }
                    v
                }
                _ => {
                    return Err(self.err(
                        Some(span),
                        key,
                        "a variable is a string or a table",
                        "write `name = { default = \"value\" }` or `name = { required = true }`",
                    ));
                }
            };
            out.insert(name.into_inner(), variable);
        }
        Ok(out)
    }

    fn function(
        &self,
        index: usize,
        raw: RawFunction,
        span: Range<usize>,
    ) -> Result<Function, ManifestError> {
        let key = |k: &str| format!("function[{index}].{k}");
        let name = raw.name;
        check_name(name.get_ref()).map_err(|why| {
            self.err(
                Some(name.span()),
                key("name"),
                format!("function name `{}` {why}", name.get_ref()),
                "use lowercase letters, digits and `-`, e.g. `create-contact`",
            )
        })?;
        let fname = name.get_ref().clone();

        let source = raw.source.ok_or_else(|| {
            self.err(
                Some(span.clone()),
                key("source"),
                format!("function `{fname}` has no `source`"),
                "add `source = \"functions/<crate-folder>\"` (a Rust crate) or `source = \"path/to/component.wasm\"`",
            )
        })?;
        let source = self.source(&fname, &key("source"), source)?;

        let trigger = raw.trigger.ok_or_else(|| {
            self.err(
                Some(span.clone()),
                key("trigger"),
                format!("function `{fname}` has no `trigger`"),
                "add e.g. `trigger = { http = { route = \"/hello\" } }`",
            )
        })?;
        let trigger = self.trigger(&fname, &key("trigger"), trigger)?;

        let mut bindings = BTreeMap::new();
        for (bname, binding) in raw.bindings {
            let bkey = format!("{}.{}", key("bindings"), bname.get_ref());
            if check_name(&bname.get_ref().replace('_', "-")).is_err() {
                return Err(self.err(
                    Some(bname.span()),
                    bkey,
                    format!("binding name `{}` is not valid", bname.get_ref()),
                    "use lowercase letters, digits, `-` and `_`",
                ));
            }
            let b = self.binding(&bkey, binding)?;
            bindings.insert(bname.into_inner(), b);
        }

        let retry = match raw.retry {
            None => RetryPolicy::default(),
            Some(r) => self.retry(&key("retry"), r)?,
        };
        let limits = match raw.limits {
            None => Limits::default(),
            Some(l) => self.limits(&key("limits"), l.into_inner())?,
        };
        let outbound_http = self.outbound_http(&key("outbound_http"), raw.outbound_http)?;
        Ok(Function {
            name: name.into_inner(),
            source,
            trigger,
            bindings,
            retry,
            limits,
            outbound_http,
        })
    }

    fn outbound_http(
        &self,
        key: &str,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<crate::OutboundRule>, ManifestError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let mut rules = Vec::new();
        for (i, text) in raw.into_inner().into_iter().enumerate() {
            let rule = crate::OutboundRule::parse(text.get_ref()).map_err(|why| {
                self.err(
                    Some(text.span()),
                    format!("{key}[{i}]"),
                    why,
                    "write `scheme://host[:port][/path]`, e.g. `https://hooks.example.com`, `http://127.0.0.1:*` or `https://*.example.com/api`",
                )
            })?;
            rules.push(rule);
        }
        Ok(rules)
    }

    fn source(
        &self,
        fname: &str,
        key: &str,
        source: Spanned<String>,
    ) -> Result<Source, ManifestError> {
        let span = source.span();
        let rel = source.into_inner();
        let path: PathBuf = self.dir.join(&rel);
        if rel.ends_with(".wasm") {
            if !path.is_file() {
                return Err(self.err(
                    Some(span),
                    key,
                    format!("function `{fname}`: component file `{rel}` does not exist"),
                    format!(
                        "build the component to {}, or point `source` at a function folder",
                        path.display()
                    ),
                ));
            }
            return Ok(Source::Wasm(path));
        }
        let cargo = path.join("Cargo.toml");
        if !cargo.is_file() && path.join("package.json").is_file() {
            return Ok(Source::Js { dir: path });
        }
        if !cargo.is_file() && path.join("pyproject.toml").is_file() {
            return Ok(Source::Python { dir: path });
        }
        let text = std::fs::read_to_string(&cargo).map_err(|_| {
            self.err(
                Some(span.clone()),
                key,
                format!(
                    "function `{fname}`: source `{rel}` is not a .wasm file nor a folder with a Cargo.toml (Rust), package.json (JavaScript/TypeScript) or pyproject.toml (Python)"
                ),
                format!(
                    "create the function (`gust new http-rust|http-js|http-ts|http-py DIR` shows the layout), or fix the path (it is relative to {})",
                    self.dir.display()
                ),
            )
        })?;
        let package = text
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                self.err(
                    Some(span),
                    key,
                    format!(
                        "function `{fname}`: {} has no [package] name",
                        cargo.display()
                    ),
                    "give the crate a `[package]` section with a `name`",
                )
            })?;
        Ok(Source::Crate { dir: path, package })
    }

    fn trigger(
        &self,
        fname: &str,
        key: &str,
        raw: Spanned<RawTrigger>,
    ) -> Result<Trigger, ManifestError> {
        let span = raw.span();
        let t = raw.into_inner();
        let events = [
            (EventTriggerKind::Timer, t.timer),
            (EventTriggerKind::Queue, t.queue),
            (EventTriggerKind::Topic, t.topic),
            (EventTriggerKind::Blob, t.blob),
            (EventTriggerKind::Changefeed, t.changefeed),
            (EventTriggerKind::Stream, t.stream),
            (EventTriggerKind::Mqtt, t.mqtt),
            (EventTriggerKind::Workflow, t.workflow),
            (EventTriggerKind::Activity, t.activity),
        ];
        let mut found: Vec<Trigger> = Vec::new();
        if let Some(http) = t.http {
            found.push(Trigger::Http(self.http(fname, key, http)?));
        }
        for (kind, settings) in events {
            if let Some(settings) = settings {
                found.push(Trigger::Event { kind, settings });
            }
        }
        match found.len() {
            1 => Ok(found.pop().expect("one trigger")),
            0 => Err(self.err(
                Some(span),
                key,
                format!("function `{fname}` has an empty trigger"),
                "name one trigger kind: http, timer, queue, topic, blob, changefeed, stream, mqtt, workflow or activity",
            )),
            _ => Err(self.err(
                Some(span),
                key,
                format!("function `{fname}` has more than one trigger"),
                "a function has exactly one trigger; split it into several [[function]] entries",
            )),
        }
    }

    fn http(
        &self,
        fname: &str,
        key: &str,
        raw: Spanned<RawHttp>,
    ) -> Result<HttpTrigger, ManifestError> {
        let raw = raw.into_inner();
        let key = format!("{key}.http");
        validate_route(raw.route.get_ref()).map_err(|e| {
            self.err(
                Some(raw.route.span()),
                format!("{key}.route"),
                format!("function `{fname}`: {e}"),
                "write a path like `/api/items/{id}` (parameters in braces, `{*rest}` only last)",
            )
        })?;
        let mut methods = Vec::new();
        for m in raw.methods.unwrap_or_default() {
            let upper = m.get_ref().to_ascii_uppercase();
            let known = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
            if !known.contains(&upper.as_str()) {
                return Err(self.err(
                    Some(m.span()),
                    format!("{key}.methods"),
                    format!("function `{fname}`: unknown HTTP method `{}`", m.get_ref()),
                    format!("use some of {}", known.join(", ")),
                ));
            }
            let method: http::Method = upper.parse().expect("known method parses");
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        let auth = match raw.auth {
            None => AuthLevel::default(),
            Some(a) => match a.get_ref().as_str() {
                "anonymous" => AuthLevel::Anonymous,
                "function" => AuthLevel::Function,
                "admin" => AuthLevel::Admin,
                other => {
                    return Err(self.err(
                        Some(a.span()),
                        format!("{key}.auth"),
                        format!("function `{fname}`: unknown auth level `{other}`"),
                        "use `anonymous`, `function` or `admin`",
                    ));
                }
            },
        };
        Ok(HttpTrigger {
            route: raw.route.into_inner(),
            methods,
            auth,
        })
    }

    fn binding(&self, key: &str, raw: Spanned<RawBinding>) -> Result<Binding, ManifestError> {
        let span = raw.span();
        let b = raw.into_inner();
        let all = [
            (BindingKind::Kv, b.kv),
            (BindingKind::Sql, b.sql),
            (BindingKind::Topic, b.topic),
            (BindingKind::Queue, b.queue),
            (BindingKind::Stream, b.stream),
            (BindingKind::Blob, b.blob),
            (BindingKind::Table, b.table),
        ];
        let mut set: Vec<Binding> = all
            .into_iter()
            .filter_map(|(kind, resource)| resource.map(|resource| Binding { kind, resource }))
            .collect();
        if set.len() != 1 {
            return Err(self.err(
                Some(span),
                key,
                "a binding names exactly one resource kind",
                "write e.g. `counter = { kv = \"counts\" }`; kinds: kv, sql, topic, queue, stream, blob, table",
            ));
        }
        let binding = set.pop().expect("one binding");
        if check_name(&binding.resource.replace('_', "-")).is_err() {
            return Err(self.err(
                Some(span),
                key,
                format!("resource name `{}` is not valid", binding.resource),
                "use lowercase letters, digits, `-` and `_`",
            ));
        }
        Ok(binding)
    }

    fn retry(&self, key: &str, raw: Spanned<RawRetry>) -> Result<RetryPolicy, ManifestError> {
        let span = raw.span();
        let r = raw.into_inner();
        let mut policy = RetryPolicy::default();
        if let Some(s) = r.strategy {
            policy.strategy = match s.get_ref().as_str() {
                "fixed" => RetryStrategy::Fixed,
                "exponential" => RetryStrategy::Exponential,
                other => {
                    return Err(self.err(
                        Some(s.span()),
                        format!("{key}.strategy"),
                        format!("unknown retry strategy `{other}`"),
                        "use `fixed` or `exponential`",
                    ));
                }
            };
        }
        if let Some(n) = r.max_attempts {
            if !(1..=RetryPolicy::MAX_ATTEMPTS).contains(n.get_ref()) {
                return Err(self.err(
                    Some(n.span()),
                    format!("{key}.max_attempts"),
                    format!(
                        "max_attempts must be 1 to {}, not {}",
                        RetryPolicy::MAX_ATTEMPTS,
                        n.get_ref()
                    ),
                    "set `max_attempts = 1` for no retries, e.g. `max_attempts = 5`",
                ));
            }
            policy.max_attempts = n.into_inner();
        }
        for (field, value, slot) in [
            ("min", r.min, &mut policy.min),
            ("max", r.max, &mut policy.max),
        ] {
            if let Some(v) = value {
                let bad = |why: String| {
                    self.err(
                        Some(v.span()),
                        format!("{key}.{field}"),
                        why,
                        "e.g. `1s`, `500ms`, `1m`",
                    )
                };
                *slot = parse_duration(v.get_ref()).map_err(bad)?;
                if *slot < RetryPolicy::MIN_DELAY || *slot > RetryPolicy::MAX_DELAY {
                    return Err(bad(format!(
                        "retry `{field}` must be at least 10ms and at most 24h, not `{}`",
                        v.get_ref()
                    )));
                }
            }
        }
        if policy.min > policy.max {
            return Err(self.err(
                Some(span),
                key,
                "retry `min` is larger than `max`",
                "make `min` the first (shortest) delay and `max` the longest",
            ));
        }
        Ok(policy)
    }

    fn limits(&self, key: &str, raw: RawLimits) -> Result<Limits, ManifestError> {
        let mut limits = Limits::default();
        let out_of_range = |span: Range<usize>, field: &str, message: String, fix: &str| {
            self.err(Some(span), format!("{key}.{field}"), message, fix)
        };
        let size = |v: &Spanned<String>, field: &str| {
            parse_size(v.get_ref()).map_err(|why| {
                self.err(
                    Some(v.span()),
                    format!("{key}.{field}"),
                    why,
                    "e.g. `64MiB`",
                )
            })
        };
        if let Some(m) = raw.memory {
            limits.memory = size(&m, "memory")?;
            if !(Limits::MIN_MEMORY..=Limits::MAX_MEMORY).contains(&limits.memory) {
                return Err(out_of_range(
                    m.span(),
                    "memory",
                    "memory limit must be between 1MiB and 4GiB".into(),
                    "e.g. `memory = \"64MiB\"`",
                ));
            }
        }
        if let Some(b) = raw.max_body {
            limits.max_body = size(&b, "max_body")?;
            if limits.max_body > Limits::MAX_BODY {
                return Err(out_of_range(
                    b.span(),
                    "max_body",
                    format!("max_body must be at most 1GiB, not `{}`", b.get_ref()),
                    "e.g. `max_body = \"16MiB\"`; stream larger files through a blob container",
                ));
            }
        }
        if let Some(t) = raw.timeout {
            limits.timeout = parse_duration(t.get_ref()).map_err(|why| {
                self.err(Some(t.span()), format!("{key}.timeout"), why, "e.g. `30s`")
            })?;
            if limits.timeout.is_zero() || limits.timeout > Limits::MAX_TIMEOUT {
                return Err(out_of_range(
                    t.span(),
                    "timeout",
                    format!(
                        "timeout must be more than zero and at most 1h, not `{}`",
                        t.get_ref()
                    ),
                    "e.g. `timeout = \"30s\"`",
                ));
            }
        }
        if let Some(c) = raw.concurrency {
            if !(1..=Limits::MAX_CONCURRENCY).contains(c.get_ref()) {
                return Err(out_of_range(
                    c.span(),
                    "concurrency",
                    format!("concurrency must be 1 to 10000, not {}", c.get_ref()),
                    "e.g. `concurrency = 64`",
                ));
            }
            limits.concurrency = c.into_inner();
        }
        Ok(limits)
    }

    fn check_route_clash(
        &self,
        index: usize,
        function: &Function,
        span: &Range<usize>,
        earlier: &[(Function, Range<usize>)],
    ) -> Result<(), ManifestError> {
        let Some(http) = function.http() else {
            return Ok(());
        };
        let shape = route_shape(&http.route);
        for (other, _) in earlier {
            let Some(o) = other.http() else { continue };
            let overlap = http.methods.is_empty()
                || o.methods.is_empty()
                || http.methods.iter().any(|m| o.methods.contains(m));
            if overlap && route_shape(&o.route) == shape {
                return Err(self.err(
                    Some(span.clone()),
                    format!("function[{index}].trigger.http.route"),
                    format!(
                        "route `{}` of function `{}` clashes with route `{}` of function `{}`",
                        http.route, function.name, o.route, other.name
                    ),
                    "give each function its own route, or split the methods between them",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `name` may name a resource (queue, topic, store): lowercase
/// letters, digits, `-` and `_`, at most 63 characters.
pub fn is_resource_name(name: &str) -> bool {
    check_name(&name.replace('_', "-")).is_ok()
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may only hold lowercase letters, digits and `-`");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with `-`");
    }
    Ok(())
}

/// A hint for common TOML deserialisation messages.
fn toml_fix(message: &str) -> String {
    if message.contains("unknown field") {
        if message.contains("`http`") && message.contains("`timer`") {
            "use one trigger kind: http, timer, queue, topic, blob, changefeed, stream, mqtt, workflow or activity"
                .into()
        } else {
            "remove or rename the key; the message lists the keys allowed here".into()
        }
    } else if message.contains("missing field") {
        "add the missing key".into()
    } else if message.contains("invalid type") {
        "check the value's type (strings need quotes, lists use [ ])".into()
    } else {
        "check the TOML syntax at that position".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("functions/hello");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join("Cargo.toml"), "[package]\nname = \"hello-fn\"\n").unwrap();
        std::fs::write(dir.path().join("prebuilt.wasm"), b"\0asm").unwrap();
        dir
    }

    fn parse(dir: &Path, text: &str) -> Result<App, ManifestError> {
        parse_app(dir, &dir.join("gust.toml"), text)
    }

    const GOOD: &str = r#"
[app]
name = "contacts"
[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }
short = "x"
[[function]]
name = "hello"
source = "functions/hello"
trigger = { http = { route = "/api/items/{id}", methods = ["get", "POST"], auth = "anonymous" } }
bindings = { counter = { kv = "counts" } }
retry = { strategy = "fixed", max_attempts = 3, min = "1s", max = "10s" }
limits = { memory = "64MiB", timeout = "5s", concurrency = 8, max_body = "1MiB" }
[[function]]
name = "raw"
source = "prebuilt.wasm"
trigger = { queue = { queue = "jobs" } }
"#;

    #[test]
    fn parses_a_full_manifest() {
        let dir = app_dir();
        let app = parse(dir.path(), GOOD).unwrap();
        assert_eq!(app.name, "contacts");
        assert_eq!(app.variables["greeting"].default.as_deref(), Some("hello"));
        assert!(app.variables["token"].required && app.variables["token"].secret);
        assert_eq!(app.variables["short"].default.as_deref(), Some("x"));
        let f = &app.functions[0];
        let http = f.http().unwrap();
        assert_eq!(http.route, "/api/items/{id}");
        assert_eq!(http.methods, vec![http::Method::GET, http::Method::POST]);
        assert_eq!(http.auth, AuthLevel::Anonymous);
        assert_eq!(
            f.source,
            Source::Crate {
                dir: dir.path().join("functions/hello"),
                package: "hello-fn".into()
            }
        );
        assert_eq!(f.bindings["counter"].kind, BindingKind::Kv);
        assert_eq!(f.limits.memory, 64 << 20);
        assert_eq!(f.limits.concurrency, 8);
        assert_eq!(f.retry.max_attempts, 3);
        match &app.functions[1].trigger {
            Trigger::Event {
                kind: EventTriggerKind::Queue,
                settings,
            } => assert_eq!(settings["queue"].as_str(), Some("jobs")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(app.functions[1].source, Source::Wasm(_)));
    }

    fn error_of(text: &str) -> ManifestError {
        let dir = app_dir();
        parse(dir.path(), text).unwrap_err()
    }

    const HEAD: &str =
        "[app]\nname = \"a\"\n[[function]]\nname = \"f\"\nsource = \"functions/hello\"\n";

    #[test]
    fn unknown_trigger_kind_names_line_and_kinds() {
        let e = error_of(&format!(
            "{HEAD}trigger = {{ htp = {{ route = \"/x\" }} }}\n"
        ));
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("htp"), "{e}");
        assert!(e.fix.contains("http, timer"), "{e}");
    }

    #[test]
    fn bad_route_is_located() {
        let e = error_of(&format!(
            "{HEAD}trigger = {{ http = {{ route = \"x/{{id\" }} }}\n"
        ));
        assert_eq!(e.line, 6);
        assert_eq!(e.key, "function[0].trigger.http.route");
        assert!(e.message.contains("must start with `/`"), "{e}");
    }

    #[test]
    fn duplicate_route_names_both_functions() {
        let text = format!(
            "{HEAD}trigger = {{ http = {{ route = \"/a/{{id}}\" }} }}\n[[function]]\nname = \"g\"\nsource = \"functions/hello\"\ntrigger = {{ http = {{ route = \"/a/{{key}}\", methods = [\"GET\"] }} }}\n"
        );
        let e = error_of(&text);
        assert!(
            e.message.contains("clashes") && e.message.contains("`f`"),
            "{e}"
        );
        assert_eq!(e.line, 7);
    }

    #[test]
    fn same_route_different_methods_is_fine() {
        let dir = app_dir();
        let text = format!(
            "{HEAD}trigger = {{ http = {{ route = \"/a\", methods = [\"GET\"] }} }}\n[[function]]\nname = \"g\"\nsource = \"functions/hello\"\ntrigger = {{ http = {{ route = \"/a\", methods = [\"POST\"] }} }}\n"
        );
        parse(dir.path(), &text).unwrap();
    }

    #[test]
    fn script_folders_are_javascript_or_python_sources() {
        let dir = app_dir();
        let js = dir.path().join("functions/js");
        std::fs::create_dir_all(&js).unwrap();
        std::fs::write(js.join("package.json"), "{}").unwrap();
        let py = dir.path().join("functions/py");
        std::fs::create_dir_all(&py).unwrap();
        std::fs::write(py.join("pyproject.toml"), "").unwrap();
        let text = "[app]\nname = \"a\"\n[[function]]\nname = \"j\"\nsource = \"functions/js\"\ntrigger = { http = { route = \"/j\" } }\n[[function]]\nname = \"p\"\nsource = \"functions/py\"\ntrigger = { http = { route = \"/p\" } }\n";
        let app = parse(dir.path(), text).unwrap();
        assert_eq!(app.functions[0].source, Source::Js { dir: js.clone() });
        assert_eq!(app.functions[1].source, Source::Python { dir: py.clone() });
        assert_eq!(app.functions[0].source.dir(), Some(js.as_path()));
    }

    #[test]
    fn missing_source_says_how_to_fix() {
        let e = error_of(
            "[app]\nname = \"a\"\n[[function]]\nname = \"f\"\nsource = \"functions/nope\"\ntrigger = { http = { route = \"/x\" } }\n",
        );
        assert_eq!(e.line, 5);
        assert!(e.message.contains("functions/nope"), "{e}");
        assert!(e.fix.contains("gust new"), "{e}");
        assert!(e.message.contains("package.json"), "{e}");
        let e = error_of(
            "[app]\nname = \"a\"\n[[function]]\nname = \"f\"\ntrigger = { http = { route = \"/x\" } }\n",
        );
        assert_eq!(e.key, "function[0].source");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_located() {
        let e = error_of("[app]\nname = \"a\"\nnmae = 3\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("nmae"), "{e}");
        let e = error_of("[app\nname = 1\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn a_manifest_that_is_not_utf8_is_located() {
        let dir = app_dir();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            b"[app]\nname = \"a\"\n# caf\xe9\n",
        )
        .unwrap();
        let e = load_app(dir.path()).unwrap_err();
        assert_eq!((e.line, e.column), (3, 6), "{e}");
        assert!(
            e.message.contains("not UTF-8") && e.fix.contains("UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn limits_and_retries_that_switch_themselves_off_are_refused() {
        let http = format!("{HEAD}trigger = {{ http = {{ route = \"/x\" }} }}\n");
        for (line, key, says) in [
            (
                "limits = { concurrency = 4294967295 }",
                "limits.concurrency",
                "1 to 10000",
            ),
            (
                "limits = { max_body = \"99999999999999999999999999999GiB\" }",
                "limits.max_body",
                "too large",
            ),
            (
                "limits = { max_body = \"2GiB\" }",
                "limits.max_body",
                "at most 1GiB",
            ),
            (
                "limits = { timeout = \"100000000 years\" }",
                "limits.timeout",
                "",
            ),
            (
                "limits = { timeout = \"2h\" }",
                "limits.timeout",
                "at most 1h",
            ),
            (
                "retry = { max_attempts = 4294967295 }",
                "retry.max_attempts",
                "1 to 100",
            ),
            (
                "retry = { min = \"0s\", max = \"0s\" }",
                "retry.min",
                "at least 10ms",
            ),
            (
                "retry = { min = \"1s\", max = \"1000d\" }",
                "retry.max",
                "24h",
            ),
        ] {
            let e = error_of(&format!("{http}{line}\n"));
            assert_eq!(e.key, format!("function[0].{key}"), "{line}: {e}");
            assert_eq!(e.line, 7, "{line}: {e}");
            assert!(e.message.contains(says), "{line}: {e}");
        }
        let ok = format!(
            "{http}retry = {{ min = \"10ms\", max = \"24h\", max_attempts = 100 }}\nlimits = {{ concurrency = 10000, max_body = \"1GiB\", timeout = \"1h\" }}\n"
        );
        parse(app_dir().path(), &ok).unwrap();
    }

    #[test]
    fn bad_limits_and_names() {
        let e = error_of(&format!(
            "{HEAD}trigger = {{ http = {{ route = \"/x\" }} }}\nlimits = {{ memory = \"64 parsecs\" }}\n"
        ));
        assert_eq!(e.key, "function[0].limits.memory");
        let e = error_of("[app]\nname = \"Bad Name\"\n");
        assert_eq!(e.key, "app.name");
        let e = error_of(&format!(
            "{HEAD}trigger = {{ http = {{ route = \"/x\", auth = \"root\" }} }}\n"
        ));
        assert!(e.fix.contains("anonymous"), "{e}");
    }

    #[test]
    fn gateway_table_is_kept_as_written() {
        let dir = app_dir();
        let text = format!(
            "{HEAD}trigger = {{ http = {{ route = \"/x\" }} }}\n[gateway]\nbody_timeout = \"5s\"\n\
             [[gateway.route]]\nname = \"v1\"\nprefix = \"/v1\"\ntarget = {{ function = \"f\" }}\n"
        );
        let app = parse(dir.path(), &text).unwrap();
        let gateway = app.gateway.expect("kept");
        assert_eq!(gateway["body_timeout"].as_str(), Some("5s"));
        let routes = gateway["route"].as_array().unwrap();
        assert_eq!(routes[0]["name"].as_str(), Some("v1"));

        let app = parse(dir.path(), GOOD).unwrap();
        assert!(app.gateway.is_none());

        let e = error_of("[app]\nname = \"a\"\ngateway = 1\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn outbound_http_rules_are_parsed_and_located() {
        let dir = app_dir();
        let ok = format!(
            "{HEAD}trigger = {{ queue = {{ queue = \"q\" }} }}\noutbound_http = [\"http://127.0.0.1:*\", \"https://hooks.example.com\"]\n"
        );
        let app = parse(dir.path(), &ok).unwrap();
        let rules = &app.functions[0].outbound_http;
        assert_eq!(rules.len(), 2);
        assert!(rules[0].allows("http", "127.0.0.1", 9, "/"));
        let e = error_of(&format!(
            "{HEAD}trigger = {{ queue = {{ queue = \"q\" }} }}\noutbound_http = [\"https://ok.org\", \"ftp://x\"]\n"
        ));
        assert_eq!(e.key, "function[0].outbound_http[1]");
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("ftp"), "{e}");
        assert!(e.fix.contains("scheme://host"), "{e}");
        let none = parse(dir.path(), GOOD).unwrap();
        assert!(none.functions[0].outbound_http.is_empty());
    }

    #[test]
    fn sse_streams_are_checked() {
        let dir = app_dir();
        let base = format!(
            "{HEAD}trigger = {{ http = {{ route = \"/jobs/{{id}}\", methods = [\"GET\"] }} }}\n"
        );
        let ok = format!(
            "{base}[[sse]]\nroute = \"/jobs/{{id}}/events\"\ntopic = \"job-events\"\nsubject = \"{{id}}\"\nauth = \"anonymous\"\n"
        );
        let app = parse(dir.path(), &ok).unwrap();
        assert_eq!(app.sse.len(), 1);
        assert_eq!(app.sse[0].topic, "job-events");
        assert_eq!(app.sse[0].auth, AuthLevel::Anonymous);
        let e = error_of(&format!(
            "{base}[[sse]]\nroute = \"/jobs/{{id}}/events\"\ntopic = \"t\"\nsubject = \"{{job}}\"\n"
        ));
        assert_eq!(e.key, "sse[0].subject");
        assert_eq!(e.line, 10, "{e}");
        assert!(e.fix.contains("{id}"), "{e}");
        let e = error_of(&format!(
            "{base}[[sse]]\nroute = \"/jobs/{{key}}\"\ntopic = \"t\"\n"
        ));
        assert_eq!(e.key, "sse[0].route");
        assert!(e.message.contains("function `f`"), "{e}");
        let e = error_of(&format!("{base}[[sse]]\nroute = \"/s\"\n"));
        assert_eq!(e.key, "sse[0].topic");
        let e = error_of(&format!(
            "{base}[[sse]]\nroute = \"/s\"\ntopic = \"t\"\nauth = \"everyone\"\n"
        ));
        assert_eq!(e.key, "sse[0].auth");
        let e = error_of(&format!(
            "{base}[[sse]]\nroute = \"/s\"\ntopic = \"t\"\nfilter = 1\n"
        ));
        assert!(e.message.contains("filter"), "{e}");
    }
}
