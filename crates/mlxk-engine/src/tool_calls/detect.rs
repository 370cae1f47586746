//! Which family a model's tool calls belong to, from what its chat template writes and the
//! tokens its tokenizer adds, never from its name: a fine-tune keeps its base's markup under
//! any name, and a renamed conversion keeps its template.

use super::ToolFormat;

/// Markup a template writes when it renders calls or teaches the format, most specific
/// first: Qwen3-Coder's template also writes `<tool_call>`, which alone means Hermes.
const TEMPLATE_MARKUP: [(&[&str], ToolFormat); 5] = [
    (&["<function=", "<parameter="], ToolFormat::Qwen3Xml),
    (&["<|channel|>"], ToolFormat::Harmony),
    (&["[TOOL_CALLS]"], ToolFormat::Mistral),
    (&["<tool_call>"], ToolFormat::Hermes),
    (&["<|python_tag|>"], ToolFormat::Llama3Json),
];

/// Llama 3.2's template renders calls without `<|python_tag|>` (3.1's renders it only for
/// built-in tools), but both teach the format in these words.
const LLAMA3_INSTRUCTIONS: [&str; 2] = [
    "Given the following functions, please respond with a JSON",
    "\"parameters\": dictionary of argument name and its value",
];

/// A family's marker among the tokenizer's special tokens, for a template that takes tools
/// without naming the markup.
const SPECIAL_TOKENS: [(&str, ToolFormat); 3] = [
    ("<|channel|>", ToolFormat::Harmony),
    ("[TOOL_CALLS]", ToolFormat::Mistral),
    ("<|python_tag|>", ToolFormat::Llama3Json),
];

impl ToolFormat {
    /// The family of a model's tool calls, from its chat template and the tokenizer's added or
    /// special token strings. `None` when the template shows no tool support (no template, or
    /// one that neither writes a family's markup nor reads `tools`).
    pub fn detect(chat_template: Option<&str>, special_tokens: &[String]) -> Option<ToolFormat> {
        let template = chat_template?;
        let written = TEMPLATE_MARKUP
            .iter()
            .find(|(markers, _)| markers.iter().all(|m| template.contains(m)))
            .map(|(_, format)| *format);
        if written.is_some() {
            return written;
        }
        if LLAMA3_INSTRUCTIONS.iter().any(|m| template.contains(m)) {
            return Some(ToolFormat::Llama3Json);
        }
        if !template.contains("tools") {
            return None;
        }
        SPECIAL_TOKENS
            .iter()
            .find(|(token, _)| special_tokens.iter().any(|t| t == token))
            .map(|(_, format)| *format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(template: &str) -> Option<ToolFormat> {
        ToolFormat::detect(Some(template), &[])
    }

    /// Qwen 2.5's and Qwen3's templates, where they teach the format.
    const QWEN: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- endif %}"#;

    /// Qwen3-Coder's: the instructions, and how a call in the history is rendered.
    const QWEN3_CODER: &str = r#"{{- '\n\nIf you choose to call a tool ONLY reply in the following format with NO suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n</function>\n</tool_call>' }}
{%- for tool_call in message.tool_calls %}
    {{- '\n<tool_call>\n<function=' + tool_call.name + '>\n' }}
    {%- for args_name, args_value in tool_call.arguments|items %}
        {{- '<parameter=' + args_name + '>\n' }}
    {%- endfor %}
{%- endfor %}"#;

    /// Llama 3.1's, where tools go into the first user message and calls are rendered.
    const LLAMA31: &str = r#"{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Given the following functions, please respond with a JSON for a function call " }}
{{- "with its proper arguments that best answers the given prompt.\n\n" }}
{{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
{%- if builtin_tools is defined and tool_call.name in builtin_tools %}
    {{- "<|python_tag|>" + tool_call.name + ".call(" }}
{%- else  %}
    {{- '{"name": "' + tool_call.name + '", ' }}
    {{- '"parameters": ' }}
{%- endif %}"#;

    /// Llama 3.2's (1B, 3B): no `<|python_tag|>`.
    const LLAMA32: &str = r#"{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
{%- endif %}"#;

    /// Mistral 7B v0.3's and Nemo's: a JSON list.
    const MISTRAL_V3: &str = r#"{%- elif message.tool_calls is defined and message.tool_calls is not none %}
    {{- "[TOOL_CALLS][" }}
    {%- for tool_call in message.tool_calls %}
        {%- set out = tool_call.function|tojson %}
        {{- out[:-1] }}
        {{- ', "id": "' + tool_call.id + '"}' }}
    {%- endfor %}"#;

    /// Magistral's and Devstral's: a header per call.
    const MISTRAL_ARGS: &str = r#"{%- for tool_call in message.tool_calls %}
    {{- '[TOOL_CALLS]' + tool_call.function.name }}
    {{- '[CALL_ID]' + tool_call.id }}
    {{- '[ARGS]' + tool_call['function']['arguments']|tojson }}
{%- endfor %}"#;

    /// gpt-oss'.
    const HARMONY: &str = r#"{{- "<|start|>assistant to=" }}
{{- "functions." + tool_call.name + "<|channel|>commentary " }}
{{- (tool_call.content_type if tool_call.content_type is defined else "json") + "<|message|>" }}
{{- tool_call.arguments|tojson }}
{{- "<|call|>" }}"#;

    /// A plain ChatML template: no tools.
    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// Llama 3.0's: no tools, though a later tokenizer would have the tag.
    const LLAMA30: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}";

    #[test]
    fn each_family_is_told_by_its_template() {
        assert_eq!(detect(QWEN), Some(ToolFormat::Hermes));
        assert_eq!(detect(QWEN3_CODER), Some(ToolFormat::Qwen3Xml));
        assert_eq!(detect(LLAMA31), Some(ToolFormat::Llama3Json));
        assert_eq!(detect(LLAMA32), Some(ToolFormat::Llama3Json));
        assert_eq!(detect(MISTRAL_V3), Some(ToolFormat::Mistral));
        assert_eq!(detect(MISTRAL_ARGS), Some(ToolFormat::Mistral));
        assert_eq!(detect(HARMONY), Some(ToolFormat::Harmony));
    }

    #[test]
    fn a_template_without_tools_has_no_format() {
        let tokens = ["<|python_tag|>".to_string(), "[TOOL_CALLS]".to_string()];
        assert_eq!(ToolFormat::detect(Some(CHATML), &tokens), None);
        assert_eq!(ToolFormat::detect(Some(LLAMA30), &tokens), None);
        assert_eq!(ToolFormat::detect(None, &tokens), None);
    }

    #[test]
    fn a_template_taking_tools_without_markup_goes_by_the_special_tokens() {
        let template = "{%- if tools %}{{- tools | tojson }}{%- endif %}{{- messages }}";
        let tokens = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let detect = |list: &[&str]| ToolFormat::detect(Some(template), &tokens(list));
        assert_eq!(detect(&["<s>", "[TOOL_CALLS]"]), Some(ToolFormat::Mistral));
        assert_eq!(
            detect(&["<|python_tag|>", "<|eom_id|>"]),
            Some(ToolFormat::Llama3Json)
        );
        assert_eq!(
            detect(&["<|channel|>", "<|message|>"]),
            Some(ToolFormat::Harmony)
        );
        assert_eq!(detect(&["<|im_start|>"]), None);
    }

    #[test]
    fn the_template_outranks_the_tokenizer() {
        // A Mistral-based fine-tune taught Hermes' markup.
        let tokens = ["[TOOL_CALLS]".to_string()];
        assert_eq!(
            ToolFormat::detect(Some(QWEN), &tokens),
            Some(ToolFormat::Hermes)
        );
    }

    #[test]
    fn labels_match_the_serialized_names() {
        for format in [
            ToolFormat::Hermes,
            ToolFormat::Qwen3Xml,
            ToolFormat::Llama3Json,
            ToolFormat::Mistral,
            ToolFormat::Harmony,
        ] {
            let serialized = serde_json::to_value(format).unwrap();
            assert_eq!(serialized, serde_json::json!(format.label()));
        }
    }
}
