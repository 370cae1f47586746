//! A call written as JSON, `{"name": …, "arguments": {…}}`, as Hermes, Llama 3 and Mistral
//! write it.

use serde_json::{Map, Value};

/// A call read from the output, before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ParsedCall {
    pub(super) name: String,
    pub(super) arguments: Map<String, Value>,
}

/// Whether a call object must say what its arguments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArgumentsKey {
    /// Inside a format's own markers: a call of a function without parameters may leave them
    /// out (or write `null`).
    Optional,
    /// Llama 3's calls have no markers: only an object with `name` and its parameters is a
    /// call, any other JSON is an answer.
    Required,
}

/// `{"name": …, "arguments": …}`, or `"parameters"` as Llama 3 is taught to write.
pub(super) fn call_from_json(value: &Value, key: ArgumentsKey) -> Option<ParsedCall> {
    let object = value.as_object()?;
    let name = object.get("name")?.as_str()?.trim();
    if name.is_empty() {
        return None;
    }
    let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
        None | Some(Value::Null) if key == ArgumentsKey::Optional => Map::new(),
        Some(arguments) => arguments_object(arguments)?,
        None => return None,
    };
    Some(ParsedCall {
        name: name.to_string(),
        arguments,
    })
}

/// Arguments are an object; some templates and models write it as a JSON string instead.
pub(super) fn arguments_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(arguments) => Some(arguments.clone()),
        Value::String(text) => match serde_json::from_str(text) {
            Ok(Value::Object(arguments)) => Some(arguments),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arguments(call: Option<ParsedCall>) -> Option<Value> {
        call.map(|c| Value::Object(c.arguments))
    }

    #[test]
    fn arguments_come_as_an_object_whichever_way_they_were_written() {
        let optional = ArgumentsKey::Optional;
        let object = json!({"name": "f", "arguments": {"a": [1, {"b": null}]}});
        assert_eq!(
            arguments(call_from_json(&object, optional)),
            Some(json!({"a": [1, {"b": null}]}))
        );
        let llama = json!({"name": "f", "parameters": {"a": 1}});
        assert_eq!(
            arguments(call_from_json(&llama, ArgumentsKey::Required)),
            Some(json!({"a": 1}))
        );
        let string = json!({"name": "f", "arguments": "{\"a\": 1}"});
        assert_eq!(
            arguments(call_from_json(&string, optional)),
            Some(json!({"a": 1}))
        );
        let bare = json!({"name": "f"});
        assert_eq!(arguments(call_from_json(&bare, optional)), Some(json!({})));
        assert_eq!(call_from_json(&bare, ArgumentsKey::Required), None);
    }

    #[test]
    fn anything_else_is_not_a_call() {
        for value in [
            json!({"city": "Paris"}),
            json!({"name": 3, "arguments": {}}),
            json!({"name": " ", "arguments": {}}),
            json!({"name": "f", "arguments": [1]}),
            json!({"name": "f", "arguments": "not json"}),
            json!({"name": "f", "arguments": "[1]"}),
            json!(["f"]),
        ] {
            assert_eq!(
                call_from_json(&value, ArgumentsKey::Optional),
                None,
                "{value}"
            );
        }
    }
}
