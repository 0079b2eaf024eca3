//! Declarative body rewriting: rename, remove, set and add top-level
//! fields of the request's JSON body (`transform`) or of the upstream's
//! successful reply (`response_transform`), in that order. String values may name topic
//! parameters (`"{action}"`), so the reference's v2 transform is config.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::kinds::{settings, Kind};
use super::{
    Contract, Flow, Middleware, MiddlewareConfig, MiddlewareKind, RequestContext, Resources,
};
use crate::upstream::UpstreamResponse;
use crate::{ErrorKind, GatewayError};

/// Rewrites the request body before it goes upstream.
pub struct Transform {
    name: String,
    spec: TransformSpec,
}

impl Transform {
    pub fn new(name: String, spec: TransformSpec) -> Transform {
        Transform { name, spec }
    }
}

impl Middleware for Transform {
    fn name(&self) -> &str {
        &self.name
    }

    fn request_filter(&self, ctx: &mut RequestContext<'_>) -> Result<Flow, GatewayError> {
        if ctx.body.is_null() {
            ctx.body = Value::Object(Map::new());
        }
        let params = ctx.params;
        let Some(body) = ctx.body.as_object_mut() else {
            return Err(GatewayError::new(
                ErrorKind::InvalidJson,
                "this route expects a JSON object",
            ));
        };
        self.spec.apply(body, |name| params.get(name));
        Ok(Flow::Continue)
    }
}

/// Rewrites the upstream's successful (2xx) JSON object reply before the
/// envelope is built. Error envelopes the gateway made itself, upstream
/// 4xx/5xx bodies and replies that are not an object pass unchanged.
pub struct ResponseTransform {
    name: String,
    spec: TransformSpec,
}

impl ResponseTransform {
    pub fn new(name: String, spec: TransformSpec) -> ResponseTransform {
        ResponseTransform { name, spec }
    }
}

impl Middleware for ResponseTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn response_filter(
        &self,
        ctx: &RequestContext<'_>,
        response: &mut UpstreamResponse,
    ) -> Result<(), GatewayError> {
        if !(200..300).contains(&response.status) || !response.body.get().starts_with('{') {
            return Ok(());
        }
        let mut body: Map<String, Value> = serde_json::from_str(response.body.get())
            .map_err(|error| GatewayError::new(ErrorKind::UpstreamError, error.to_string()))?;
        let params = ctx.params;
        self.spec.apply(&mut body, |name| params.get(name));
        response.body = serde_json::value::to_raw_value(&body)
            .map_err(|error| GatewayError::new(ErrorKind::Internal, error.to_string()))?;
        Ok(())
    }
}

impl TransformSpec {
    /// Applies the rules to one object; string values of `set` and `add`
    /// may name topic parameters.
    pub fn apply<'p>(
        &self,
        body: &mut Map<String, Value>,
        param: impl Fn(&str) -> Option<&'p str> + Copy,
    ) {
        for (from, to) in &self.rename {
            if let Some(value) = body.remove(from) {
                body.insert(to.clone(), value);
            }
        }
        for field in &self.remove {
            body.remove(field);
        }
        let render = |value: &Value| match value {
            Value::String(template) => Value::String(render(template, param)),
            other => other.clone(),
        };
        for (field, value) in &self.set {
            body.insert(field.clone(), render(value));
        }
        for (field, value) in &self.add {
            if !body.contains_key(field) {
                body.insert(field.clone(), render(value));
            }
        }
    }
}

/// Replaces each `{name}` with the parameter's value; unknown names stay as written.
fn render<'p>(template: &str, param: impl Fn(&str) -> Option<&'p str>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}').map(|end| (&after[..end], end)) {
            Some((name, end)) if param(name).is_some() => {
                out.push_str(param(name).unwrap_or_default());
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rename, remove, set and add top-level fields of a JSON object, in that order.
#[derive(Debug, Clone, Default)]
pub struct TransformSpec {
    pub rename: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// String values may contain `{param}`.
    pub set: Vec<(String, Value)>,
    /// Like `set`, only when the field is absent.
    pub add: Vec<(String, Value)>,
}

impl MiddlewareConfig for TransformSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(Transform::new(name.to_string(), self.clone()))
    }

    fn contract(&self) -> Contract {
        Contract {
            kind: Some("transform"),
            effect:
                "rewrites top-level fields of the request body (an object) before it goes upstream"
                    .into(),
            credentials: Vec::new(),
            errors: vec![ErrorKind::InvalidJson],
        }
    }
}

/// A [`TransformSpec`] applied to the upstream's successful JSON reply.
#[derive(Debug, Clone, Default)]
pub struct ResponseTransformSpec(pub TransformSpec);

impl MiddlewareConfig for ResponseTransformSpec {
    fn build(&self, name: &str, _: &Resources) -> Arc<dyn Middleware> {
        Arc::new(ResponseTransform::new(name.to_string(), self.0.clone()))
    }

    fn contract(&self) -> Contract {
        Contract {
            kind: Some("response_transform"),
            effect: "rewrites top-level fields of the upstream's successful JSON object reply"
                .into(),
            ..Contract::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    add: BTreeMap<String, serde_json::Value>,
}

impl From<RawTransform> for TransformSpec {
    fn from(raw: RawTransform) -> TransformSpec {
        TransformSpec {
            rename: raw.rename.into_iter().collect(),
            remove: raw.remove,
            set: raw.set.into_iter().collect(),
            add: raw.add.into_iter().collect(),
        }
    }
}

pub(super) fn kind() -> Arc<dyn MiddlewareKind> {
    Arc::new(Kind::new("transform", |table, _| {
        Ok(Arc::new(TransformSpec::from(settings::<RawTransform>(
            table,
        )?)))
    }))
}

pub(super) fn response_kind() -> Arc<dyn MiddlewareKind> {
    Arc::new(Kind::new("response_transform", |table, _| {
        let spec = TransformSpec::from(settings::<RawTransform>(table)?);
        Ok(Arc::new(ResponseTransformSpec(spec)))
    }))
}
