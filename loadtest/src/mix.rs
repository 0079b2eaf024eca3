//! What to send: one topic template, or a weighted mix of requests read from
//! a scenario file. `{id}` in a topic or payload becomes a random number per
//! request; `${NAME}` in a header value is read from the environment when the
//! file is loaded (tokens and API keys stay out of scenario files).

use std::path::Path;

use serde::Deserialize;

/// One kind of request in a mix.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub topic: String,
    pub payload: String,
    /// Relative share of requests.
    pub weight: u32,
    /// User properties, e.g. `authorization = "Bearer ${TOKEN}"` in a scenario file.
    pub headers: Vec<(String, String)>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    requests: Vec<RawTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// The requests of a run, picked by weight.
#[derive(Debug, Clone)]
pub struct Mix {
    templates: Vec<RequestTemplate>,
    total_weight: u32,
}

/// A request ready to send.
pub struct Drawn<'a> {
    pub template: &'a RequestTemplate,
    pub topic: String,
    pub payload: String,
}

impl Mix {
    pub fn new(templates: Vec<RequestTemplate>) -> anyhow::Result<Mix> {
        let total_weight = templates.iter().map(|t| t.weight).sum();
        anyhow::ensure!(
            !templates.is_empty() && total_weight > 0,
            "the request mix is empty or all its weights are 0"
        );
        Ok(Mix {
            templates,
            total_weight,
        })
    }

    /// One topic template with the same payload and headers for every request.
    pub fn single(topic: &str, payload: &str, headers: Vec<(String, String)>) -> Mix {
        Mix {
            templates: vec![RequestTemplate {
                topic: topic.to_string(),
                payload: payload.to_string(),
                weight: 1,
                headers,
            }],
            total_weight: 1,
        }
    }

    /// Reads a scenario file (TOML, `[[requests]]` tables); `env` resolves `${NAME}`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Mix> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file: ScenarioFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let templates = file
            .requests
            .into_iter()
            .map(|raw| {
                let headers = raw
                    .headers
                    .into_iter()
                    .map(|(name, value)| Ok((name, expand(&value, env)?)))
                    .collect::<anyhow::Result<_>>()?;
                Ok(RequestTemplate {
                    topic: raw.topic,
                    payload: raw.payload,
                    weight: raw.weight,
                    headers,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Mix::new(templates)
    }

    /// Adds user properties to every request of the mix (command-line headers).
    pub fn add_headers(&mut self, headers: &[(String, String)]) {
        for template in &mut self.templates {
            template.headers.extend(headers.iter().cloned());
        }
    }

    pub fn templates(&self) -> &[RequestTemplate] {
        &self.templates
    }

    /// Picks a request by weight and fills in a random `{id}`.
    pub fn draw(&self, rng: &mut fastrand::Rng) -> Drawn<'_> {
        let mut ticket = rng.u32(0..self.total_weight);
        let template = self
            .templates
            .iter()
            .find(|t| {
                if ticket < t.weight {
                    return true;
                }
                ticket -= t.weight;
                false
            })
            .unwrap_or(&self.templates[0]);
        let id = rng.u32(0..1_000_000).to_string();
        Drawn {
            template,
            topic: template.topic.replace("{id}", &id),
            payload: template.payload.replace("{id}", &id),
        }
    }
}

/// Replaces `${NAME}` with the variable's value; an unset variable is an error.
fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("unclosed `${{` in `{value}`"))?;
        let name = &after[..end];
        let resolved =
            env(name).ok_or_else(|| anyhow::anyhow!("environment variable `{name}` is not set"))?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_ids_and_environment() {
        let dir = std::env::temp_dir().join(format!("mix-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("scenario.toml");
        std::fs::write(
            &file,
            "[[requests]]\ntopic = \"api/v1/users/get/{id}\"\nweight = 3\nheaders = { authorization = \"Bearer ${TOKEN}\" }\n\n[[requests]]\ntopic = \"api/v1/users/create\"\npayload = '{\"name\": \"user-{id}\"}'\nweight = 1\n",
        )
        .expect("write");
        let env = |name: &str| (name == "TOKEN").then(|| "abc".to_string());
        let mix = Mix::load(&file, &env).expect("loads");
        assert_eq!(
            mix.templates()[0].headers,
            [("authorization".to_string(), "Bearer abc".to_string())]
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let mut gets = 0;
        for _ in 0..4000 {
            let drawn = mix.draw(&mut rng);
            assert!(!drawn.topic.contains("{id}") && !drawn.payload.contains("{id}"));
            if drawn.topic.starts_with("api/v1/users/get/") {
                gets += 1;
            }
        }
        assert!((2800..3200).contains(&gets), "{gets} of 4000 by weight 3:1");
        let missing = |_: &str| None;
        assert!(Mix::load(&file, &missing).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
