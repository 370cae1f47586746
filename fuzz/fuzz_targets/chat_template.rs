//! A chat template from a model file, rendered as the engine renders prompts: an error or
//! text, never a panic, a hang or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxk_engine::tokenizer::{chat_context, render_chat_template};
use mlxk_engine::ChatMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    let messages = [
        ChatMessage::new("system", "be brief"),
        ChatMessage::new("user", "hi"),
        ChatMessage::new("assistant", "hello"),
    ];
    let _ = render_chat_template(template, chat_context(&messages, true, "<s>", "</s>"));
});
