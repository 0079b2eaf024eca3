//! The route table of a config file: groups and routes validated, each
//! error on its line, then built and checked as a whole (conflicts, the
//! middleware each route runs).

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use reqwest::header::HeaderName;
use reqwest::Method;
use routemq_gateway::middleware::MiddlewareConfigs;
use routemq_gateway::upstream::{HeaderPolicy, PathTemplate};
use routemq_gateway::{
    Builtin, ChunkedReplies, Coalesce, ForwardRoute, RouteTarget, DEFAULT_DEADLINE_HEADER,
};
use routemq_router::{Group, Qos, RouteSpec, RouteTable, TopicPattern};
use toml::Spanned;

use super::guards::check_routes_against_middleware;
use super::raw::{RawGateway, RawGroup, RawInherited, RawRoute};
use super::validate::ConfigError;

const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes and groups of a file, as one table, with what the
/// `[gateway]` table sets for every route.
pub(super) fn route_table(
    routes: Vec<Spanned<RawRoute>>,
    groups: Vec<Spanned<RawGroup>>,
    middleware: &MiddlewareConfigs,
    at: &At<'_>,
    file: &str,
    gateway: &RawGateway,
) -> Result<RouteTable<RouteTarget>, ConfigError> {
    let mut lines = HashMap::new();
    let mut root = Group::root();
    let inherited = RawInherited {
        deadline_header: gateway.deadline_header.clone(),
        ..RawInherited::default()
    };
    let known = Known { middleware, at };
    for route in routes {
        root = root.route_spec(route_spec(route, "", &inherited, &mut lines, &known)?);
    }
    for group in groups {
        root = root.group(group_spec(group, "", &inherited, &mut lines, &known)?);
    }
    let routes = RouteTable::build(root).map_err(|error| {
        let line = lines.get(error.pattern()).copied();
        ConfigError {
            file: file.to_string(),
            line,
            message: error.to_string(),
        }
    })?;
    if routes.routes().is_empty() {
        return Err(at(None, "no routes are configured".into()));
    }
    check_routes_against_middleware(&routes, middleware).map_err(|message| {
        let line = lines
            .get(message.split('`').nth(1).unwrap_or_default())
            .copied();
        ConfigError {
            file: file.to_string(),
            line,
            message,
        }
    })?;
    Ok(routes)
}

pub(super) type At<'a> = dyn Fn(Option<Range<usize>>, String) -> ConfigError + 'a;

/// What route validation checks names against, and how it reports errors.
struct Known<'a> {
    middleware: &'a MiddlewareConfigs,
    at: &'a At<'a>,
}

impl Known<'_> {
    fn check_middleware(&self, names: &[String]) -> Result<(), String> {
        match names
            .iter()
            .find(|name| !self.middleware.contains_key(*name))
        {
            None => Ok(()),
            Some(name) => Err(format!(
                "middleware `{name}` is not defined: add a [middleware.{name}] table"
            )),
        }
    }
}

fn group_spec(
    spanned: Spanned<RawGroup>,
    parent_prefix: &str,
    parent: &RawInherited,
    lines: &mut HashMap<String, usize>,
    known: &Known<'_>,
) -> Result<Group<RouteTarget>, ConfigError> {
    let at = known.at;
    let span = spanned.span();
    let raw = spanned.into_inner();
    let prefix = join(parent_prefix, &raw.prefix);
    if let Some(line) = at(Some(span.clone()), String::new()).line {
        lines.entry(prefix.clone()).or_insert(line);
    }
    known
        .check_middleware(&raw.middleware)
        .map_err(|message| at(Some(span.clone()), format!("group `{prefix}`: {message}")))?;
    let inherited = RawInherited {
        service: raw.service.or_else(|| parent.service.clone()),
        timeout: raw.timeout.or(parent.timeout),
        forward_headers: raw
            .forward_headers
            .or_else(|| parent.forward_headers.clone()),
        anonymous_replay: raw.anonymous_replay.or(parent.anonymous_replay),
        deadline_header: raw
            .deadline_header
            .or_else(|| parent.deadline_header.clone()),
        chunked_replies: raw
            .chunked_replies
            .or_else(|| parent.chunked_replies.clone()),
    };
    let mut group = Group::new(raw.prefix).middleware(raw.middleware);
    for route in raw.routes {
        group = group.route_spec(route_spec(route, &prefix, &inherited, lines, known)?);
    }
    for child in raw.groups {
        group = group.group(group_spec(child, &prefix, &inherited, lines, known)?);
    }
    Ok(group)
}

fn route_spec(
    spanned: Spanned<RawRoute>,
    prefix: &str,
    inherited: &RawInherited,
    lines: &mut HashMap<String, usize>,
    known: &Known<'_>,
) -> Result<RouteSpec<RouteTarget>, ConfigError> {
    let at = known.at;
    let span = spanned.span();
    let raw = spanned.into_inner();
    let full_topic = join(prefix, &raw.topic);
    let error = |message: String| {
        at(
            Some(span.clone()),
            format!("route `{full_topic}`: {message}"),
        )
    };
    if let Some(line) = at(Some(span.clone()), String::new()).line {
        lines.insert(full_topic.clone(), line);
    }
    let pattern =
        TopicPattern::parse(&full_topic).map_err(|e| at(Some(span.clone()), e.to_string()))?;
    known.check_middleware(&raw.middleware).map_err(&error)?;
    let qos = match raw.qos {
        None => Qos::AtLeastOnce,
        Some(level) => Qos::from_u8(level)
            .ok_or_else(|| error(format!("qos must be 0, 1 or 2, not {level}")))?,
    };
    let target = match &raw.handler {
        Some(handler) => builtin_target(handler, &raw).map_err(&error)?,
        None => forward_target(&raw, inherited, &pattern).map_err(&error)?,
    };
    Ok(RouteSpec {
        topic: raw.topic,
        qos,
        middleware: raw.middleware,
        target,
    })
}

/// A route answered by the gateway itself.
fn builtin_target(handler: &str, raw: &RawRoute) -> Result<RouteTarget, String> {
    if raw.service.is_some() || raw.path.is_some() || raw.method.is_some() {
        return Err("a `handler` route takes no service, method or path".into());
    }
    Ok(RouteTarget::Builtin(match handler {
        "health" => Builtin::Health,
        "services" => Builtin::Services,
        "metrics" => Builtin::Metrics,
        other => {
            return Err(format!(
                "unknown handler `{other}` (known: health, services, metrics)"
            ))
        }
    }))
}

/// A route forwarding to a service, with what its groups pass down.
fn forward_target(
    raw: &RawRoute,
    inherited: &RawInherited,
    pattern: &TopicPattern,
) -> Result<RouteTarget, String> {
    let service = raw
        .service
        .clone()
        .or_else(|| inherited.service.clone())
        .ok_or("no `service` on the route or its groups, and no `handler`")?;
    let path = upstream_path(raw, pattern)?;
    let method = method(raw.method.as_deref())?;
    let forward_headers = raw
        .forward_headers
        .clone()
        .or_else(|| inherited.forward_headers.clone())
        .unwrap_or_default();
    let headers = HeaderPolicy::new(forward_headers.iter().map(String::as_str))?;
    let timeout = raw
        .timeout
        .or(inherited.timeout)
        .unwrap_or(DEFAULT_ROUTE_TIMEOUT);
    if timeout.is_zero() {
        return Err("timeout must be above zero".into());
    }
    let deadline_header = deadline_header(
        raw.deadline_header
            .as_deref()
            .or(inherited.deadline_header.as_deref()),
    )?;
    let chunked_replies = chunked_replies(
        raw.chunked_replies
            .as_deref()
            .or(inherited.chunked_replies.as_deref()),
    )?;
    let coalesce = coalesce(raw, &method)?;
    Ok(RouteTarget::Forward(ForwardRoute {
        service,
        method,
        path,
        timeout,
        headers,
        anonymous_replay: raw
            .anonymous_replay
            .or(inherited.anonymous_replay)
            .unwrap_or(false),
        deadline_header,
        chunked_replies,
        coalesce,
    }))
}

/// The route's upstream path, whose every parameter is in its topic.
fn upstream_path(raw: &RawRoute, pattern: &TopicPattern) -> Result<PathTemplate, String> {
    let path = raw
        .path
        .as_deref()
        .ok_or("a forwarding route needs an upstream `path`")?;
    let path = PathTemplate::parse(path).map_err(|e| e.to_string())?;
    let topic_params: Vec<&str> = pattern.param_names().collect();
    if let Some(missing) = path.param_names().find(|name| !topic_params.contains(name)) {
        return Err(format!(
            "path parameter `{{{missing}}}` is not in the topic"
        ));
    }
    Ok(path)
}

/// The deadline header a route sends: the default's name unless it names
/// another, none when it names `""`.
fn deadline_header(name: Option<&str>) -> Result<Option<HeaderName>, String> {
    let name = name.unwrap_or(DEFAULT_DEADLINE_HEADER);
    if name.is_empty() {
        return Ok(None);
    }
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("deadline_header `{name}` is not an HTTP header name"))?;
    if SET_BY_THE_GATEWAY.contains(&header.as_str()) || header.as_str().starts_with("x-user-") {
        return Err(format!(
            "deadline_header `{name}` is a header the gateway sets itself"
        ));
    }
    Ok(Some(header))
}

/// When a route sends its replies in chunks; on request unless it says.
fn chunked_replies(name: Option<&str>) -> Result<ChunkedReplies, String> {
    let Some(name) = name else {
        return Ok(ChunkedReplies::default());
    };
    ChunkedReplies::parse(name)
        .ok_or_else(|| format!("chunked_replies must be on_request, always or never, not `{name}`"))
}

/// Headers the gateway writes on every upstream call.
const SET_BY_THE_GATEWAY: [&str; 8] = [
    "x-request-id",
    "x-request-attempt",
    "x-gateway-service",
    "accept",
    "content-type",
    "content-length",
    "traceparent",
    "tracestate",
];

/// Coalescing, which only a GET may ask for (any other method changes
/// something, so two calls are two calls).
fn coalesce(raw: &RawRoute, method: &Method) -> Result<Option<Coalesce>, String> {
    let across = raw.coalesce_across_callers.unwrap_or(false);
    match raw.coalesce.unwrap_or(false) {
        false if across => Err("coalesce_across_callers needs coalesce = true".into()),
        false => Ok(None),
        true if method != Method::GET => {
            Err(format!("coalesce is for GET routes; this one is {method}"))
        }
        true if across => Ok(Some(Coalesce::AcrossCallers)),
        true => Ok(Some(Coalesce::PerCaller)),
    }
}

/// The HTTP method a route names; POST when it names none.
fn method(raw: Option<&str>) -> Result<Method, String> {
    let method = raw.unwrap_or("POST").to_ascii_uppercase();
    match method.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
            Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method `{method}`"))
        }
        other => Err(format!(
            "method must be GET, POST, PUT, PATCH or DELETE, not `{other}`"
        )),
    }
}

fn join(prefix: &str, topic: &str) -> String {
    match (prefix.is_empty(), topic.is_empty()) {
        (true, _) => topic.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{topic}"),
    }
}
