use crate::Qos;

/// A route as declared inside a group: its topic relative to the group prefix.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    pub topic: String,
    pub qos: Qos,
    pub middleware: Vec<String>,
    pub target: T,
}

/// A group of routes sharing a topic prefix and a middleware list. Groups nest
/// to any depth; a route's middleware is its groups' lists, outermost first,
/// followed by its own.
#[derive(Debug, Clone)]
pub struct Group<T> {
    pub(crate) prefix: String,
    pub(crate) middleware: Vec<String>,
    pub(crate) routes: Vec<RouteSpec<T>>,
    pub(crate) groups: Vec<Group<T>>,
}

impl<T> Group<T> {
    /// The root of a route tree: no prefix, no middleware.
    pub fn root() -> Self {
        Group::new("")
    }

    pub fn new(prefix: impl Into<String>) -> Self {
        Group {
            prefix: prefix.into(),
            middleware: Vec::new(),
            routes: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub fn middleware<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.middleware.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn route(mut self, topic: impl Into<String>, qos: Qos, target: T) -> Self {
        self.routes.push(RouteSpec {
            topic: topic.into(),
            qos,
            middleware: Vec::new(),
            target,
        });
        self
    }

    pub fn route_spec(mut self, spec: RouteSpec<T>) -> Self {
        self.routes.push(spec);
        self
    }

    pub fn group(mut self, group: Group<T>) -> Self {
        self.groups.push(group);
        self
    }
}

/// Joins a parent prefix and a child topic with exactly one `/`, leaving
/// validation of the result to [`crate::TopicPattern::parse`].
pub(crate) fn join_topic(prefix: &str, topic: &str) -> String {
    match (prefix.is_empty(), topic.is_empty()) {
        (true, _) => topic.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{topic}"),
    }
}
