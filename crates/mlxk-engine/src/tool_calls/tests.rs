//! Each family's outputs, as their templates and documentation show them, read whole and
//! streamed in every way they can be split: the same content, reasoning and calls each time.

use serde_json::{json, Value};

use super::*;

/// A model output and what it must read as.
struct Case {
    name: &'static str,
    output: &'static str,
    content: &'static str,
    reasoning: &'static str,
    calls: Vec<(&'static str, Value)>,
}

fn case(name: &'static str, output: &'static str, content: &'static str) -> Case {
    Case {
        name,
        output,
        content,
        reasoning: "",
        calls: Vec::new(),
    }
}

impl Case {
    fn call(mut self, name: &'static str, arguments: Value) -> Self {
        self.calls.push((name, arguments));
        self
    }

    fn reasoning(mut self, reasoning: &'static str) -> Self {
        self.reasoning = reasoning;
        self
    }
}

/// What a run read: content and reasoning joined, calls with their arguments parsed.
#[derive(Debug, PartialEq)]
struct Reading {
    content: String,
    reasoning: String,
    calls: Vec<(String, Value)>,
}

/// Markup that must never be in content unless the expected content has it.
fn markers(format: ToolFormat) -> &'static [&'static str] {
    match format {
        ToolFormat::Hermes => &["<tool_call>", "</tool_call>"],
        ToolFormat::Qwen3Xml => &["<tool_call>", "</tool_call>", "<function=", "<parameter="],
        ToolFormat::Llama3Json => &["<|python_tag|>", "\"parameters\""],
        ToolFormat::Mistral => &["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
        ToolFormat::Harmony => &[
            "<|start|>",
            "<|channel|>",
            "<|message|>",
            "<|end|>",
            "<|call|>",
            "<|return|>",
            "<|constrain|>",
        ],
    }
}

/// Streams `pieces` through a parser, checking the events are well-formed on the way.
fn run<'a>(format: ToolFormat, pieces: impl IntoIterator<Item = &'a str>) -> Reading {
    let mut parser = ToolCallParser::new(format);
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(parser.push(piece));
    }
    events.extend(parser.finish());
    let calls = parser.calls();

    let mut reading = Reading {
        content: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
    };
    let mut arguments = vec![String::new(); calls.len()];
    let mut open = None;
    for event in &events {
        match event {
            ToolEvent::Content(text) | ToolEvent::Reasoning(text) => {
                assert!(!text.is_empty(), "empty text event");
                assert_eq!(open, None, "text inside a call");
                if let ToolEvent::Content(text) = event {
                    reading.content.push_str(text);
                } else {
                    reading.reasoning.push_str(text);
                }
            }
            ToolEvent::CallStart { index, id, name } => {
                assert_eq!(open, None, "a call starts inside another");
                assert_eq!(*index, reading.calls.len(), "calls are numbered in order");
                assert_eq!((id, name), (&calls[*index].id, &calls[*index].name));
                open = Some(*index);
                reading.calls.push((name.clone(), Value::Null));
            }
            ToolEvent::Arguments { index, fragment } => {
                assert_eq!(open, Some(*index));
                arguments[*index].push_str(fragment);
            }
            ToolEvent::CallEnd { index } => {
                assert_eq!(open, Some(*index));
                open = None;
            }
        }
    }
    assert_eq!(open, None, "a call never ended");
    assert_eq!(reading.calls.len(), calls.len());
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(
            arguments[i], call.arguments,
            "fragments join into the arguments"
        );
        let parsed: Value = serde_json::from_str(&call.arguments).unwrap();
        assert!(parsed.is_object(), "arguments are an object");
        assert_eq!(parsed.to_string(), call.arguments, "arguments are compact");
        reading.calls[i].1 = parsed;
    }
    let mut ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), calls.len(), "ids are unique");
    reading
}

/// Char-boundary offsets of `text`, ends excluded.
fn cut_points(text: &str) -> Vec<usize> {
    (1..text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect()
}

fn split_at<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        pieces.push(&text[from..cut]);
        from = cut;
    }
    pieces.push(&text[from..]);
    pieces
}

/// A small deterministic generator for the random splits (xorshift64).
struct Splitter(u64);

impl Splitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Cuts at a random subset of `points`, each kept with probability 1/`one_in`.
    fn cuts(&mut self, points: &[usize], one_in: u64) -> Vec<usize> {
        points
            .iter()
            .copied()
            .filter(|_| self.next().is_multiple_of(one_in))
            .collect()
    }
}

/// The case read whole, and streamed split at every boundary, in single characters, and in
/// random pieces, always reads as expected; no content event carries a call's markup.
fn check(format: ToolFormat, case: &Case) {
    let expected = Reading {
        content: case.content.to_string(),
        reasoning: case.reasoning.to_string(),
        calls: case
            .calls
            .iter()
            .map(|(name, arguments)| (name.to_string(), arguments.clone()))
            .collect(),
    };
    let name = case.name;
    let text = case.output;

    let (content, calls) = parse(format, text);
    assert_eq!(content, expected.content, "{name}: parse()");
    let named: Vec<_> = calls
        .iter()
        .map(|c| (c.name.clone(), serde_json::from_str(&c.arguments).unwrap()))
        .collect();
    assert_eq!(named, expected.calls, "{name}: parse()");
    assert_eq!(run(format, [text]), expected, "{name}: whole");

    let points = cut_points(text);
    for &cut in &points {
        let pieces = split_at(text, &[cut]);
        assert_eq!(run(format, pieces), expected, "{name}: split at {cut}");
    }
    let chars = split_at(text, &points);
    assert_eq!(run(format, chars), expected, "{name}: one char at a time");
    let mut splitter = Splitter(0x9E37_79B9_7F4A_7C15 ^ text.len() as u64);
    for one_in in [2, 3, 5, 8, 13] {
        for _ in 0..20 {
            let cuts = splitter.cuts(&points, one_in);
            let pieces = split_at(text, &cuts);
            assert_eq!(run(format, pieces), expected, "{name}: cuts at {cuts:?}");
        }
    }

    let mut parser = ToolCallParser::new(format);
    let mut events: Vec<ToolEvent> = split_at(text, &points)
        .into_iter()
        .flat_map(|piece| parser.push(piece))
        .collect();
    events.extend(parser.finish());
    for event in events {
        if let ToolEvent::Content(text) = event {
            for marker in markers(format) {
                assert!(
                    case.content.contains(marker) || !text.contains(marker),
                    "{name}: {marker} in content {text:?}"
                );
            }
        }
    }
}

fn check_all(format: ToolFormat, cases: &[Case]) {
    for case in cases {
        check(format, case);
    }
}

fn paris() -> Value {
    json!({"city": "Paris"})
}

fn europe_paris() -> Value {
    json!({"timezone": "Europe/Paris"})
}

/// Nested objects, arrays, and a string with brackets and quotes in it.
fn nested() -> Value {
    json!({
        "query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}},
        "limit": [1, [2, 3]],
        "exact": false,
        "note": "a } in \"quotes\" { and ] [",
        "missing": null
    })
}

#[test]
fn hermes() {
    const NESTED: &str = r#"<tool_call>
{"name": "search", "arguments": {"query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}}, "limit": [1, [2, 3]], "exact": false, "note": "a } in \"quotes\" { and ] [", "missing": null}}
</tool_call>"#;
    check_all(
        ToolFormat::Hermes,
        &[
            case(
                "single",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                "",
            )
            .call("get_weather", paris()),
            case(
                "parallel",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\
                 <tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>\n",
                "",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case(
                "text before",
                "I'll look that up.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                "I'll look that up.\n\n",
            )
            .call("get_weather", paris()),
            case(
                "text between and after",
                "Checking.<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call> and \
                 <tool_call>{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}</tool_call>\nDone.",
                "Checking. and \nDone.",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case("nested and arrays", NESTED, "").call("search", nested()),
            case(
                "arguments as a string",
                r#"<tool_call>{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}</tool_call>"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "no arguments",
                "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>",
                "",
            )
            .call("get_time", json!({})),
            case(
                "non-ASCII around a call",
                "Météo à Zürich ☀️ <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}</tool_call>",
                "Météo à Zürich ☀️ ",
            )
            .call("get_weather", json!({"city": "Zürich"})),
            case(
                "plain text",
                "The forecast: sunny, 22 °C. Tags like <b> are fine; so is a < b <tool.",
                "The forecast: sunny, 22 °C. Tags like <b> are fine; so is a < b <tool.",
            ),
            case(
                "only whitespace",
                "\n  \n",
                "\n  \n",
            ),
            case(
                "markers that are not calls",
                "Use the <tool_call> tag, e.g. <tool_call>not json</tool_call>, and <tool_calls> too.",
                "Use the <tool_call> tag, e.g. <tool_call>not json</tool_call>, and <tool_calls> too.",
            ),
            case(
                "a stray tag before a call",
                "<tool_call>oops <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                "<tool_call>oops ",
            )
            .call("get_weather", paris()),
            case(
                "malformed JSON",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }}\n</tool_call>",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }}\n</tool_call>",
            ),
            case(
                "JSON that is not a call",
                "<tool_call>{\"city\": \"Paris\"}</tool_call>",
                "<tool_call>{\"city\": \"Paris\"}</tool_call>",
            ),
            case(
                "unterminated",
                "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa",
                "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa",
            ),
            case(
                "unterminated after a whole call",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n",
                "",
            )
            .call("get_weather", paris()),
            case("a tag cut off", "Done. <tool_ca", "Done. <tool_ca"),
            // Qwen2.5-Coder-0.5B-Instruct's own answer to a weather question: no tags.
            case(
                "a bare call",
                "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
                "",
            )
            .call("get_weather", paris()),
            case(
                "a bare object that is no call",
                "  {\"city\": \"Paris\"}",
                "  {\"city\": \"Paris\"}",
            ),
            case("only whitespace", "  \n", "  \n"),
        ],
    );
}

#[test]
fn qwen3_xml() {
    const SINGLE: &str =
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n\
        <parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
    const NESTED: &str = "<tool_call>\n<function=search>\n\
        <parameter=query>\n{\"tags\": [\"rust\", \"mlx\"], \"range\": {\"from\": 1, \"to\": 2.5}}\n</parameter>\n\
        <parameter=limit>\n[1, [2, 3]]\n</parameter>\n<parameter=exact>\nfalse\n</parameter>\n\
        <parameter=note>\na } in \"quotes\" { and ] [\n</parameter>\n<parameter=missing>\nnull\n</parameter>\n\
        </function>\n</tool_call>";
    const CODE: &str =
        "<tool_call>\n<function=write_file>\n<parameter=path>\nsrc/a.py\n</parameter>\n\
        <parameter=content>\ndef f():\n    return 1 < 2\n\n</parameter>\n</function>\n</tool_call>";
    let weather = || json!({"city": "Paris", "days": 3});
    check_all(
        ToolFormat::Qwen3Xml,
        &[
            case("single", SINGLE, "").call("get_weather", weather()),
            case(
                "parallel",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n\
                 <parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n\
                 <function=get_time>\n<parameter=timezone>\nEurope/Paris\n</parameter>\n</function>\n</tool_call>",
                "",
            )
            .call("get_weather", weather())
            .call("get_time", europe_paris()),
            case(
                "text before",
                "I'll check the weather.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n\
                 <parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
                "I'll check the weather.\n\n",
            )
            .call("get_weather", weather()),
            case("nested and arrays", NESTED, "").call("search", nested()),
            case("code", CODE, "").call(
                "write_file",
                json!({"path": "src/a.py", "content": "def f():\n    return 1 < 2\n"}),
            ),
            case(
                "no parameters",
                "<tool_call>\n<function=get_time>\n</function>\n</tool_call>",
                "",
            )
            .call("get_time", json!({})),
            case(
                "plain text",
                "Use <function> and <parameter> in XML; a < b.",
                "Use <function> and <parameter> in XML; a < b.",
            ),
            case(
                "not a function",
                "<tool_call>\n<function get_weather>\n</tool_call> ok",
                "<tool_call>\n<function get_weather>\n</tool_call> ok",
            ),
            case(
                "a parameter left open",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>",
            ),
            case(
                "Hermes JSON is not this format",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
            ),
            case(
                "unterminated",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar",
            ),
            case(
                "unterminated after a whole function",
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n\
                 <parameter=days>\n3\n</parameter>\n</function>\n",
                "",
            )
            .call("get_weather", weather()),
        ],
    );
}

#[test]
fn llama3_json() {
    check_all(
        ToolFormat::Llama3Json,
        &[
            case(
                "single",
                r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "python tag",
                r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "parallel",
                r#"{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {"timezone": "Europe/Paris"}};"#,
                "",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case(
                "leading whitespace, arguments",
                "\n\n {\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n",
                "",
            )
            .call("get_time", europe_paris()),
            case(
                "nested and arrays",
                r#"{"name": "search", "parameters": {"query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}}, "limit": [1, [2, 3]], "exact": false, "note": "a } in \"quotes\" { and ] [", "missing": null}}"#,
                "",
            )
            .call("search", nested()),
            case(
                "text after a call",
                r#"{"name": "get_weather", "parameters": {"city": "Paris"}} Let me know."#,
                " Let me know.",
            )
            .call("get_weather", paris()),
            case(
                "plain text",
                "It is sunny {mostly} in Paris.",
                "It is sunny {mostly} in Paris.",
            ),
            case(
                "text before a call is an answer",
                r#"Sure! {"name": "get_weather", "parameters": {"city": "Paris"}}"#,
                r#"Sure! {"name": "get_weather", "parameters": {"city": "Paris"}}"#,
            ),
            case(
                "braces that are not JSON",
                "{mostly} sunny",
                "{mostly} sunny",
            ),
            case(
                "JSON that is not a call",
                r#"{"city": "Paris", "name": "x"} is the JSON you asked for."#,
                r#"{"city": "Paris", "name": "x"} is the JSON you asked for."#,
            ),
            case(
                "a built-in tool's call is not JSON",
                "<|python_tag|>brave_search.call(query=\"weather\")",
                "<|python_tag|>brave_search.call(query=\"weather\")",
            ),
            case("the tag alone", " <|python_tag|>", " <|python_tag|>"),
            case(
                "a separator before any call",
                r#"; {"name": "get_weather", "parameters": {"city": "Paris"}}"#,
                r#"; {"name": "get_weather", "parameters": {"city": "Paris"}}"#,
            ),
            case(
                "unterminated",
                r#"{"name": "get_weather", "parameters": {"city": "Pa"#,
                r#"{"name": "get_weather", "parameters": {"city": "Pa"#,
            ),
        ],
    );
}

#[test]
fn mistral() {
    check_all(
        ToolFormat::Mistral,
        &[
            case(
                "list, single",
                r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "list, parallel with ids (v0.3 writes a space)",
                r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}, {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}, "id": "a1b2c3d4e"}]"#,
                "",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case(
                "header, single",
                r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "header, parallel",
                r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"timezone": "Europe/Paris"}"#,
                "",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case(
                "text before, call id",
                r#"Sure.[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{"timezone": "Europe/Paris"}"#,
                "Sure.",
            )
            .call("get_time", europe_paris()),
            case(
                "nested and arrays",
                r#"[TOOL_CALLS]search[ARGS]{"query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}}, "limit": [1, [2, 3]], "exact": false, "note": "a } in \"quotes\" { and ] [", "missing": null}"#,
                "",
            )
            .call("search", nested()),
            case(
                "nested in a list",
                r#"[TOOL_CALLS][{"name": "search", "arguments": {"query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}}, "limit": [1, [2, 3]], "exact": false, "note": "a } in \"quotes\" { and ] [", "missing": null}}]"#,
                "",
            )
            .call("search", nested()),
            case(
                "plain text",
                "Paris [is] sunny; [TOOL] and [TOOL_CALL] are not markers.",
                "Paris [is] sunny; [TOOL] and [TOOL_CALL] are not markers.",
            ),
            case(
                "the marker in a sentence",
                "The [TOOL_CALLS] token starts a call.",
                "The [TOOL_CALLS] token starts a call.",
            ),
            case(
                "a list that is not calls",
                "[TOOL_CALLS][1, 2, 3] done",
                "[TOOL_CALLS][1, 2, 3] done",
            ),
            case(
                "arguments that are not an object",
                r#"[TOOL_CALLS]get_weather[ARGS]"Paris""#,
                r#"[TOOL_CALLS]get_weather[ARGS]"Paris""#,
            ),
            case(
                "unterminated list",
                r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Pa"#,
                r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Pa"#,
            ),
            case(
                "unterminated header",
                "[TOOL_CALLS]get_wea",
                "[TOOL_CALLS]get_wea",
            ),
            case(
                "a call, then a cut-off one",
                r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"time"#,
                r#"[TOOL_CALLS]get_time[ARGS]{"time"#,
            )
            .call("get_weather", paris()),
        ],
    );
}

#[test]
fn harmony() {
    check_all(
        ToolFormat::Harmony,
        &[
            case(
                "call on the channel",
                "<|channel|>analysis<|message|>Need to use function get_weather.<|end|>\
                 <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json\
                 <|message|>{\"city\":\"Paris\"}<|call|>",
                "",
            )
            .reasoning("Need to use function get_weather.")
            .call("get_weather", paris()),
            case(
                "call on the role",
                "<|channel|>analysis<|message|>Time.<|end|><|start|>assistant to=functions.get_time\
                 <|channel|>commentary json<|message|>{\"timezone\": \"Europe/Paris\"}<|call|>",
                "",
            )
            .reasoning("Time.")
            .call("get_time", europe_paris()),
            case(
                "call in the first message, the role in the prompt",
                " to=functions.get_time<|channel|>commentary json<|message|>{\"timezone\": \"Europe/Paris\"}",
                "",
            )
            .call("get_time", europe_paris()),
            case(
                "parallel",
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>\
                 <|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json\
                 <|message|>{\"timezone\": \"Europe/Paris\"}<|call|>",
                "",
            )
            .call("get_weather", paris())
            .call("get_time", europe_paris()),
            case(
                "preamble before a call",
                "<|channel|>analysis<|message|>Plan first.<|end|><|start|>assistant<|channel|>commentary\
                 <|message|>**Action plan**:\n1. Generate an HTML file<|end|><|start|>assistant<|channel|>commentary \
                 to=functions.generate_file<|constrain|>json<|message|>{\"template\": \"basic_html\", \"path\": \"index.html\"}<|call|>",
                "**Action plan**:\n1. Generate an HTML file",
            )
            .reasoning("Plan first.")
            .call(
                "generate_file",
                json!({"template": "basic_html", "path": "index.html"}),
            ),
            case(
                "nested and arrays",
                r#"<|channel|>commentary to=functions.search <|constrain|>json<|message|>{"query": {"tags": ["rust", "mlx"], "range": {"from": 1, "to": 2.5}}, "limit": [1, [2, 3]], "exact": false, "note": "a } in \"quotes\" { and ] [", "missing": null}<|call|>"#,
                "",
            )
            .call("search", nested()),
            case(
                "arguments as a string",
                r#"<|channel|>commentary to=functions.get_weather json<|message|>"{\"city\": \"Paris\"}"<|call|>"#,
                "",
            )
            .call("get_weather", paris()),
            case(
                "final answer",
                "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic.<|end|>\
                 <|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
                "2 + 2 = 4.",
            )
            .reasoning("User asks: \"What is 2 + 2?\" Simple arithmetic."),
            case(
                "newlines between messages, as the docs print them",
                "<|channel|>analysis<|message|>Hmm.<|end|>\n<|start|>assistant<|channel|>final<|message|>Hi <| there.<|return|>",
                "Hi <| there.",
            )
            .reasoning("Hmm."),
            case(
                "a built-in tool goes by its channel",
                "<|channel|>analysis<|message|>Search.<|end|><|start|>assistant<|channel|>analysis \
                 to=browser.search code<|message|>{\"query\": \"weather\"}<|call|>",
                "",
            )
            .reasoning("Search.{\"query\": \"weather\"}"),
            case(
                "plain text",
                "Hello <b>there</b>, a <| b.",
                "Hello <b>there</b>, a <| b.",
            ),
            case(
                "arguments that are not JSON",
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>Paris please<|call|>",
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>Paris please",
            ),
            case(
                "unterminated",
                "<|channel|>analysis<|message|>Calling.<|end|><|start|>assistant<|channel|>commentary \
                 to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Pa",
                "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Pa",
            )
            .reasoning("Calling."),
            case(
                "unterminated after whole arguments",
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}",
                "",
            )
            .call("get_weather", paris()),
            case(
                "reasoning cut off",
                "<|channel|>analysis<|message|>Let me thi",
                "",
            )
            .reasoning("Let me thi"),
        ],
    );
}

#[test]
fn calls_are_counted_and_kept_across_pushes() {
    let mut parser = ToolCallParser::new(ToolFormat::Hermes);
    let first = parser.push("<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>");
    assert_eq!(parser.calls().len(), 1);
    let second = parser.push("<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": 1}}</tool_call>");
    assert!(parser.finish().is_empty());
    let id = |events: &[ToolEvent], n: usize| match &events[0] {
        ToolEvent::CallStart { index, id, .. } => {
            assert_eq!(*index, n);
            id.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(id(&first, 0), parser.calls()[0].id);
    assert_eq!(id(&second, 1), parser.calls()[1].id);
    assert_eq!(parser.calls()[1].arguments, r#"{"x":1}"#);
}

#[test]
fn content_streams_before_the_output_ends() {
    let mut parser = ToolCallParser::new(ToolFormat::Hermes);
    assert_eq!(
        parser.push("Hello <to"),
        [ToolEvent::Content("Hello ".into())]
    );
    assert_eq!(parser.push("day"), [ToolEvent::Content("<today".into())]);
    // A tag the model writes about is released at the first word that cannot start a call.
    assert_eq!(
        parser.push(" <tool_call> tag"),
        [ToolEvent::Content(" <tool_call> tag".into())]
    );
    let mut parser = ToolCallParser::new(ToolFormat::Qwen3Xml);
    assert_eq!(parser.push("<tool_call>\n<func"), []);
    assert_eq!(
        parser.push("tion is"),
        [ToolEvent::Content("<tool_call>\n<function is".into())]
    );
    let mut parser = ToolCallParser::new(ToolFormat::Harmony);
    assert_eq!(
        parser.push("<|channel|>final<|message|>Hi"),
        [ToolEvent::Content("Hi".into())]
    );
    let mut parser = ToolCallParser::new(ToolFormat::Mistral);
    assert_eq!(parser.push("[TOOL_CALLS]is"), []);
    assert_eq!(
        parser.push(" a token"),
        [ToolEvent::Content("[TOOL_CALLS]is a token".into())]
    );
}

/// Headers as long as a header may be still read as calls, whatever the split.
#[test]
fn the_longest_headers_are_calls() {
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let harmony_name = "f".repeat(harmony::MAX_HEADER_LEN - "to=functions.".len());
    let harmony_header = format!("to=functions.{harmony_name}");
    assert_eq!(harmony_header.len(), harmony::MAX_HEADER_LEN);
    let output = leak(format!("{harmony_header}<|message|>{{}}<|call|>"));
    let name = leak(harmony_name);
    check(
        ToolFormat::Harmony,
        &case("long", output, "").call(name, json!({})),
    );

    let mistral_name = "f".repeat(mistral::MAX_HEADER_LEN);
    let output = leak(format!("[TOOL_CALLS]{mistral_name}[ARGS]{{}}"));
    let name = leak(mistral_name);
    check(
        ToolFormat::Mistral,
        &case("long", output, "").call(name, json!({})),
    );
}

/// A call writing a long file, streamed a character at a time: each piece costs the same
/// however long the call already is (searching bodies again from their start at every piece
/// made this test some fifteen times slower).
#[test]
fn long_arguments_stream_in_linear_time() {
    let content = "fn main() { println!(\"{}\", [1, 2][0]); }\n".repeat(2_000);
    let escaped = serde_json::to_string(&content).unwrap();
    let outputs = [
        (
            ToolFormat::Hermes,
            format!("<tool_call>{{\"name\": \"write\", \"arguments\": {{\"content\": {escaped}}}}}</tool_call>"),
        ),
        (
            ToolFormat::Qwen3Xml,
            format!("<tool_call>\n<function=write>\n<parameter=content>\n{content}\n</parameter>\n</function>\n</tool_call>"),
        ),
        (
            ToolFormat::Llama3Json,
            format!("{{\"name\": \"write\", \"parameters\": {{\"content\": {escaped}}}}}"),
        ),
        (
            ToolFormat::Mistral,
            format!("[TOOL_CALLS]write[ARGS]{{\"content\": {escaped}}}"),
        ),
        (
            ToolFormat::Harmony,
            format!("<|channel|>commentary to=functions.write json<|message|>{{\"content\": {escaped}}}<|call|>"),
        ),
    ];
    for (format, output) in outputs {
        let points = cut_points(&output);
        let reading = run(format, split_at(&output, &points));
        assert_eq!(
            reading.calls,
            [("write".to_string(), json!({"content": content}))],
            "{format:?}"
        );
    }
}
