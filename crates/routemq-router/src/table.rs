use std::collections::HashMap;

use crate::filter::{derive_filters, SubscriptionFilter};
use crate::group::join_topic;
use crate::{Group, RouteError, Segment, TopicPattern};

/// MQTT quality of service of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Qos {
    AtMostOnce = 0,
    #[default]
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl Qos {
    pub fn from_u8(level: u8) -> Option<Qos> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}

/// One route of a built table, with its full pattern and effective middleware.
#[derive(Debug, Clone)]
pub struct Route<T> {
    pub pattern: TopicPattern,
    pub qos: Qos,
    /// Middleware names, outermost group first, then the route's own.
    pub middleware: Vec<String>,
    pub target: T,
}

/// Parameters captured from a topic, in pattern order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params<'t> {
    pairs: Vec<(&'t str, &'t str)>,
}

impl<'t> Params<'t> {
    pub fn get(&self, name: &str) -> Option<&'t str> {
        self.pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'t str, &'t str)> + '_ {
        self.pairs.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The route a topic matched and the parameters it captured.
#[derive(Debug)]
pub struct Match<'t, T> {
    pub route: &'t Route<T>,
    pub params: Params<'t>,
}

/// Routes indexed as a trie of topic levels. Because the builder refuses
/// overlapping routes, at most one route can match any topic.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<Route<T>>,
    root: Node,
    filters: Vec<SubscriptionFilter>,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<String, Node>,
    param: Option<Box<Node>>,
    route: Option<usize>,
}

impl<T> RouteTable<T> {
    /// Builds a table from a route tree, rejecting invalid patterns and any two
    /// routes that could match the same topic.
    pub fn build(root: Group<T>) -> Result<Self, RouteError> {
        let mut routes = Vec::new();
        flatten(root, "", &[], &mut routes)?;
        for (index, route) in routes.iter().enumerate() {
            for earlier in &routes[..index] {
                if let Some(example) = earlier.pattern.overlap(&route.pattern) {
                    return Err(RouteError::Conflict {
                        first: earlier.pattern.to_string(),
                        second: route.pattern.to_string(),
                        example,
                    });
                }
            }
        }
        let mut root = Node::default();
        for (index, route) in routes.iter().enumerate() {
            let mut node = &mut root;
            for segment in route.pattern.segments() {
                node = match segment {
                    Segment::Literal(literal) => node.literals.entry(literal.clone()).or_default(),
                    Segment::Param(_) => node.param.get_or_insert_with(Default::default),
                };
            }
            node.route = Some(index);
        }
        let filters = derive_filters(routes.iter().map(|route| (&route.pattern, route.qos)));
        Ok(RouteTable {
            routes,
            root,
            filters,
        })
    }

    /// Replaces every route's target, keeping the index: how a runtime
    /// attaches what it builds per route (middleware chains) after validation.
    pub fn try_map_targets<U, E>(
        self,
        mut map: impl FnMut(&Route<T>) -> Result<U, E>,
    ) -> Result<RouteTable<U>, E> {
        let routes = self
            .routes
            .iter()
            .map(|route| {
                Ok(Route {
                    pattern: route.pattern.clone(),
                    qos: route.qos,
                    middleware: route.middleware.clone(),
                    target: map(route)?,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        Ok(RouteTable {
            routes,
            root: self.root,
            filters: self.filters,
        })
    }

    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The MQTT topic filters that cover every route, with the highest QoS of
    /// the routes beneath each. A worker subscribes to exactly these.
    pub fn filters(&self) -> &[SubscriptionFilter] {
        &self.filters
    }

    /// Finds the route for a concrete topic and captures its parameters.
    pub fn find<'t>(&'t self, topic: &'t str) -> Option<Match<'t, T>> {
        let levels: Vec<&str> = topic.split('/').collect();
        let index = descend(&self.root, &levels)?;
        let route = &self.routes[index];
        let pairs = route
            .pattern
            .segments()
            .iter()
            .zip(&levels)
            .filter_map(|(segment, level)| match segment {
                Segment::Param(name) => Some((name.as_str(), *level)),
                Segment::Literal(_) => None,
            })
            .collect();
        Some(Match {
            route,
            params: Params { pairs },
        })
    }
}

/// Walks the trie, preferring a literal level and falling back to a parameter.
fn descend(node: &Node, levels: &[&str]) -> Option<usize> {
    let Some((level, rest)) = levels.split_first() else {
        return node.route;
    };
    if let Some(found) = node
        .literals
        .get(*level)
        .and_then(|child| descend(child, rest))
    {
        return Some(found);
    }
    if level.is_empty() {
        return None;
    }
    node.param.as_deref().and_then(|child| descend(child, rest))
}

fn flatten<T>(
    group: Group<T>,
    parent_prefix: &str,
    parent_middleware: &[String],
    out: &mut Vec<Route<T>>,
) -> Result<(), RouteError> {
    let prefix = join_topic(parent_prefix, &group.prefix);
    if !group.prefix.is_empty() {
        // Validates the prefix on its own so an error names it, not a route under it.
        TopicPattern::parse(&prefix)?;
    }
    let mut middleware = parent_middleware.to_vec();
    middleware.extend(group.middleware);
    for spec in group.routes {
        let full = join_topic(&prefix, &spec.topic);
        let pattern = TopicPattern::parse(&full)?;
        let mut route_middleware = middleware.clone();
        route_middleware.extend(spec.middleware);
        out.push(Route {
            pattern,
            qos: spec.qos,
            middleware: route_middleware,
            target: spec.target,
        });
    }
    for child in group.groups {
        flatten(child, &prefix, &middleware, out)?;
    }
    Ok(())
}
