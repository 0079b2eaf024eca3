//! Declarative request rewriting: rename, remove, set and add top-level
//! fields of the JSON body, in that order. String values may name topic
//! parameters (`"{action}"`), so the reference's v2 transform is config.

use serde_json::{Map, Value};

use super::spec::TransformSpec;
use super::{Flow, Middleware, RequestContext};
use crate::{ErrorKind, GatewayError};

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
        for (from, to) in &self.spec.rename {
            if let Some(value) = body.remove(from) {
                body.insert(to.clone(), value);
            }
        }
        for field in &self.spec.remove {
            body.remove(field);
        }
        let render = |value: &Value| match value {
            Value::String(template) => Value::String(render(template, |name| params.get(name))),
            other => other.clone(),
        };
        for (field, value) in &self.spec.set {
            body.insert(field.clone(), render(value));
        }
        for (field, value) in &self.spec.add {
            if !body.contains_key(field) {
                body.insert(field.clone(), render(value));
            }
        }
        Ok(Flow::Continue)
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
