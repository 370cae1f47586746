//! Qwen3-Coder's call body: `<function=name>` with one `<parameter=key>` per argument, each
//! value on lines of its own, as its chat template renders a call.

use serde_json::{Map, Value};

use super::json_call::ParsedCall;

pub(super) const FUNCTION_START: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAMETER_START: &str = "<parameter=";
const PARAMETER_END: &str = "</parameter>";

/// The functions in a `<tool_call>` body (normally one); `None` unless the whole body is
/// well-formed functions.
pub(super) fn parse_functions(body: &str) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (call, after) = parse_function(rest)?;
        calls.push(call);
        rest = after.trim_start();
    }
    Some(calls)
}

/// One `<function=…>…</function>` at the start of `text`, and what follows it.
fn parse_function(text: &str) -> Option<(ParsedCall, &str)> {
    let (name, mut rest) = text.strip_prefix(FUNCTION_START)?.split_once('>')?;
    let name = tag_name(name)?;
    let mut arguments = Map::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(FUNCTION_END) {
            let call = ParsedCall { name, arguments };
            return Some((call, after));
        }
        let (key, after) = rest.strip_prefix(PARAMETER_START)?.split_once('>')?;
        let (value, after) = after.split_once(PARAMETER_END)?;
        arguments.insert(tag_name(key)?, parameter_value(value));
        rest = after;
    }
}

/// A function's or parameter's name: one word.
fn tag_name(text: &str) -> Option<String> {
    let name = text.trim();
    let word = !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '<');
    word.then(|| name.to_string())
}

/// The template writes a value between newlines: strings as they are, anything else as JSON.
/// So a value that reads as JSON (a number, `true`, an object, a list) is taken as that, and
/// anything else is the string, without the two newlines the template added. Only those are
/// removed: the indentation and blank lines of a file's content are part of the value.
fn parameter_value(raw: &str) -> Value {
    let text = raw.strip_prefix('\n').unwrap_or(raw);
    let text = text.strip_suffix('\n').unwrap_or(text);
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: &str) -> Option<Vec<(String, Value)>> {
        parse_functions(body).map(|calls| {
            calls
                .into_iter()
                .map(|c| (c.name, Value::Object(c.arguments)))
                .collect()
        })
    }

    #[test]
    fn values_are_json_when_they_read_as_json_and_strings_otherwise() {
        let body = "\n<function=write_file>\n<parameter=path>\nsrc/a.py\n</parameter>\n\
            <parameter=content>\ndef f():\n    return 1 < 2\n\n</parameter>\n\
            <parameter=mode>\n420\n</parameter>\n<parameter=force>\ntrue\n</parameter>\n\
            <parameter=options>\n{\"tags\": [\"a\"], \"depth\": {\"max\": 2}}\n</parameter>\n\
            <parameter=lines>\n[1, 2]\n</parameter>\n<parameter=note>\nnull\n</parameter>\n\
            </function>\n";
        assert_eq!(
            parsed(body),
            Some(vec![(
                "write_file".into(),
                json!({"path": "src/a.py", "content": "def f():\n    return 1 < 2\n",
                    "mode": 420, "force": true, "options": {"tags": ["a"], "depth": {"max": 2}},
                    "lines": [1, 2], "note": null})
            )])
        );
    }

    #[test]
    fn a_function_without_parameters_and_two_in_one_body() {
        let body = "<function=get_time>\n</function>\n<function=f>\n<parameter=a>\nx\n</parameter>\n</function>";
        assert_eq!(
            parsed(body),
            Some(vec![
                ("get_time".into(), json!({})),
                ("f".into(), json!({"a": "x"}))
            ])
        );
    }

    #[test]
    fn a_malformed_body_is_not_a_call() {
        for body in [
            "<function=f>\n<parameter=a>\n1\n</function>",
            "<function=f>\n<parameter=a>\n1\n</parameter>\n",
            "<function=>\n</function>",
            "<function=two words>\n</function>",
            "<function=f>\n</function>\ntrailing words",
            "{\"name\": \"f\"}",
        ] {
            assert_eq!(parsed(body), None, "{body:?}");
        }
    }
}
