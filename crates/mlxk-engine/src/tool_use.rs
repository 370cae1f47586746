//! Tools offered to a model: how they reach the prompt (the model's own chat template, or a
//! system message in a documented generic format when the template has no tool support), and
//! the grammar that forces a call when a request demands one.
//!
//! The generic format is Hermes' (what Qwen 2.5 and NousHermes use): the tools as JSON inside
//! `<tools></tools>`, each call as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
//! each result as `<tool_response>...</tool_response>` in a user message.

use serde_json::{json, Value};

use crate::constraint::{lark_json, Grammar};
use crate::error::{EngineError, Result};
use crate::tokenizer::ChatMessage;
use crate::tool_calls::ToolFormat;

/// A function the model may call (OpenAI's `{"type": "function", "function": {...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema object for the arguments.
    pub parameters: Value,
    /// The arguments must validate against `parameters` (enforced when a call is forced).
    pub strict: bool,
}

/// Whether and which call the answer must make (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// No call: the tools are not shown to the model.
    None,
    /// The model decides.
    Auto,
    /// At least one call, of any tool.
    Required,
    /// A call of this tool.
    Named(String),
}

/// The tools of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// Several calls in one answer (OpenAI's `parallel_tool_calls`, on by default).
    pub parallel: bool,
}

impl ToolUse {
    /// Whether the model sees the tools and its calls are parsed.
    pub fn active(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }

    /// The `tools` a chat template receives, as `apply_chat_template(tools=...)` passes them.
    pub fn template_tools(&self) -> Vec<Value> {
        self.tools.iter().map(function_object).collect()
    }

    /// A conversation for a template without tool support: the tools described in the system
    /// message, earlier calls and results written in the generic format.
    pub fn generic_conversation(&self, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        let tools: Vec<String> = self.template_tools().iter().map(Value::to_string).collect();
        let instructions = format!(
            "# Tools\n\nYou may call one or more functions to help with the request. Their \
             signatures, as JSON Schema, are within <tools></tools>:\n<tools>\n{}\n</tools>\n\n\
             To call a function, answer with one <tool_call></tool_call> block per call, each \
             holding a JSON object with the function's name and its arguments:\n<tool_call>\n\
             {{\"name\": <function-name>, \"arguments\": <arguments-json-object>}}\n</tool_call>",
            tools.join("\n")
        );
        let mut out = Vec::with_capacity(messages.len() + 1);
        match messages.first() {
            Some(first) if first.role == "system" => out.push(ChatMessage::new(
                "system",
                &format!("{}\n\n{instructions}", first.content),
            )),
            _ => out.push(ChatMessage::new("system", &instructions)),
        }
        let rest = match messages.first() {
            Some(first) if first.role == "system" => &messages[1..],
            _ => messages,
        };
        for message in rest {
            out.push(match (message.role.as_str(), &message.tool_calls) {
                ("assistant", Some(calls)) => {
                    let mut text = message.content.clone();
                    for call in calls {
                        let function = &call["function"];
                        let call =
                            json!({"name": function["name"], "arguments": function["arguments"]});
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
                    }
                    ChatMessage::new("assistant", &text)
                }
                ("tool", _) => ChatMessage::new(
                    "user",
                    &format!("<tool_response>\n{}\n</tool_response>", message.content),
                ),
                _ => message.clone(),
            });
        }
        out
    }

    /// The grammar the answer must match in `format`, if any: the call a `required` or named
    /// choice demands, or, with `auto` and a `strict` tool, either a free answer or calls whose
    /// arguments validate. A strict tool's arguments hold exactly the properties it declares
    /// (so do a forced call's). A named choice is one call; several (with `parallel`) only for a
    /// model whose template knows tools: one that never learned them would go on calling until
    /// the token limit.
    pub fn call_grammar(&self, format: ToolFormat, native: bool) -> Result<Option<Grammar>> {
        let strict = self.tools.iter().any(|t| t.strict);
        let offered: Vec<&Tool> = match &self.choice {
            ToolChoice::None => return Ok(None),
            ToolChoice::Auto if !strict => return Ok(None),
            ToolChoice::Auto | ToolChoice::Required => self.tools.iter().collect(),
            ToolChoice::Named(name) => self.tools.iter().filter(|t| t.name == *name).collect(),
        };
        let forced = self.choice != ToolChoice::Auto;
        if offered.is_empty() {
            return Err(EngineError::Grammar(
                "tool_choice names a function that is not among the tools".into(),
            ));
        }
        let call = |name_key: &str, arguments_key: &str| {
            let one_of: Vec<Value> = offered
                .iter()
                .map(|tool| {
                    json!({
                        "type": "object",
                        "properties": {
                            name_key: {"const": tool.name},
                            arguments_key: match forced || tool.strict {
                                true => exact_arguments(&tool.parameters),
                                false => tool.parameters.clone(),
                            },
                        },
                        "required": [name_key, arguments_key],
                        "additionalProperties": false,
                    })
                })
                .collect();
            json!({"anyOf": one_of})
        };
        let several = self.parallel
            && native
            && matches!(self.choice, ToolChoice::Required | ToolChoice::Auto);
        let repeat = if several { "+" } else { "" };
        // With `auto`, a free answer is the other branch: text whose first character can begin
        // no call (neither blank nor the call's opening one).
        let (calls, free_text) = match format {
            ToolFormat::Hermes => (
                format!(
                    "calls: call{repeat} | {}\ncall: \"<tool_call>\\n\" {} \"\\n</tool_call>\\n\"\n",
                    // A bare JSON call, as small Qwen 2.5 models write it.
                    lark_json(&call("name", "arguments")),
                    lark_json(&call("name", "arguments"))
                ),
                r"TEXT: /[^<{\s](.|\n)*/",
            ),
            ToolFormat::Llama3Json => (
                format!("calls: {}\n", lark_json(&call("name", "parameters"))),
                r"TEXT: /[^{\s](.|\n)*/",
            ),
            ToolFormat::Mistral => {
                let calls = json!({"type": "array", "items": call("name", "arguments"), "minItems": 1,
                    "maxItems": if several { Value::Null } else { json!(1) }});
                let calls = strip_nulls(calls);
                (
                    format!("calls: \"[TOOL_CALLS]\" {}\n", lark_json(&calls)),
                    r"TEXT: /[^\[\s](.|\n)*/",
                )
            }
            ToolFormat::Qwen3Xml | ToolFormat::Harmony => {
                return Err(EngineError::Grammar(format!(
                    "{} cannot be enforced for the {} tool-call format yet",
                    match forced {
                        true => "a required or named tool_choice",
                        false => "a strict tool",
                    },
                    format.label()
                )))
            }
        };
        let lark = match forced {
            true => format!("start: calls\n{calls}"),
            false => format!("start: TEXT | calls\n{calls}{free_text}\n"),
        };
        Ok(Some(Grammar::Lark(lark)))
    }
}

/// OpenAI's function object for a tool.
fn function_object(tool: &Tool) -> Value {
    let mut function = json!({"name": tool.name, "parameters": tool.parameters});
    if let Some(description) = &tool.description {
        function["description"] = json!(description);
    }
    json!({"type": "function", "function": function})
}

/// A tool's parameters schema as the arguments' constraint: an object with no properties but
/// those declared (where a schema does not say otherwise), so that a forced call never invents
/// arguments the function does not take.
fn exact_arguments(parameters: &Value) -> Value {
    let mut schema = match parameters {
        Value::Object(map) if !map.is_empty() => parameters.clone(),
        _ => json!({"type": "object", "properties": {}}),
    };
    close_objects(&mut schema);
    schema
}

/// `additionalProperties: false` on every object schema that leaves it out.
pub fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_object = map.get("type").is_some_and(|t| {
                t == "object"
                    || t.as_array()
                        .is_some_and(|types| types.iter().any(|t| t == "object"))
            }) || map.contains_key("properties");
            if is_object && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                close_objects(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> ToolUse {
        ToolUse {
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("The weather in a city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                strict: false,
            }],
            choice: ToolChoice::Auto,
            parallel: true,
        }
    }

    #[test]
    fn generic_conversation_describes_tools_and_rewrites_calls_and_results() {
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(vec![json!({"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}})]);
        let mut result = ChatMessage::new("tool", "{\"temp\": 21}");
        result.tool_call_id = Some("call_1".into());
        let messages = vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Weather in Paris?"),
            call,
            result,
        ];
        let out = weather().generic_conversation(&messages);
        assert_eq!(out.len(), 4);
        assert!(out[0].content.starts_with("Be brief.\n\n# Tools"));
        assert!(out[0].content.contains("\"name\":\"get_weather\""));
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
        );
        assert_eq!(out[3].role, "user");
        assert_eq!(
            out[3].content,
            "<tool_response>\n{\"temp\": 21}\n</tool_response>"
        );
    }

    #[test]
    fn strict_tools_in_auto_allow_text_or_calls_that_validate() {
        let mut tools = weather();
        tools.tools[0].strict = true;
        let Ok(Some(Grammar::Lark(lark))) = tools.call_grammar(ToolFormat::Hermes, true) else {
            panic!("a grammar");
        };
        assert!(lark.starts_with("start: TEXT | calls\n"), "{lark}");
        assert!(lark.contains("TEXT: /[^<{\\s]"), "{lark}");
        assert!(lark.contains("\"additionalProperties\":false"), "{lark}");
        assert!(tools.call_grammar(ToolFormat::Harmony, true).is_err());
        tools.choice = ToolChoice::None;
        assert_eq!(tools.call_grammar(ToolFormat::Hermes, true).unwrap(), None);
    }

    #[test]
    fn a_forced_call_has_a_grammar_per_format_and_auto_has_none() {
        let mut tools = weather();
        assert_eq!(tools.call_grammar(ToolFormat::Hermes, true).unwrap(), None);
        tools.choice = ToolChoice::Required;
        let lark = |tools: &ToolUse, native| match tools.call_grammar(ToolFormat::Hermes, native) {
            Ok(Some(Grammar::Lark(lark))) => lark,
            other => panic!("a lark grammar, not {other:?}"),
        };
        let several = lark(&tools, true);
        assert!(
            several.contains("<tool_call>") && several.contains("\"const\":\"get_weather\""),
            "{several}"
        );
        assert!(
            several.contains("\"additionalProperties\":false"),
            "{several}"
        );
        assert!(
            several.starts_with("start: calls\ncalls: call+ |"),
            "{several}"
        );
        // A model that never learned tools makes one call.
        assert!(lark(&tools, false).contains("calls: call |"));
        tools.choice = ToolChoice::Named("nope".into());
        assert!(tools.call_grammar(ToolFormat::Hermes, true).is_err());
        tools.choice = ToolChoice::Named("get_weather".into());
        assert!(lark(&tools, true).contains("calls: call |"));
        assert!(tools.call_grammar(ToolFormat::Qwen3Xml, true).is_err());
        assert!(tools
            .call_grammar(ToolFormat::Llama3Json, true)
            .unwrap()
            .is_some());
    }
}

/// How the model in `dir` is offered tools, from its files alone (no weights, no tokenizer
/// loaded): its chat template and the added tokens `tokenizer_config.json` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ToolSupport {
    /// The format its calls are parsed in.
    pub format: ToolFormat,
    /// The chat template renders tools itself; else they are described in the generic format.
    pub native: bool,
}

impl ToolSupport {
    pub fn of_folder(dir: &std::path::Path) -> ToolSupport {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let config: Value = read("tokenizer_config.json")
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        let template = read("chat_template.jinja").or_else(|| match config.get("chat_template") {
            Some(Value::String(text)) => Some(text.clone()),
            // Several named templates: the one for tools, else the default.
            Some(Value::Array(named)) => ["tool_use", "default"].iter().find_map(|wanted| {
                named
                    .iter()
                    .find(|t| t["name"] == *wanted)
                    .and_then(|t| t["template"].as_str())
                    .map(str::to_string)
            }),
            _ => None,
        });
        let added: Vec<String> = config
            .get("added_tokens_decoder")
            .and_then(Value::as_object)
            .map(|tokens| {
                tokens
                    .values()
                    .filter_map(|t| t["content"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match ToolFormat::detect(template.as_deref(), &added) {
            Some(format) => ToolSupport {
                format,
                native: true,
            },
            None => ToolSupport {
                format: ToolFormat::Hermes,
                native: false,
            },
        }
    }
}
