package engine

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string
	Content string
}

// BuiltinTemplates lists the chat template names llama.cpp implements ("chatml",
// "llama3", "phi3", ...). Any of them can be passed by name to ApplyChatTemplate.
func BuiltinTemplates() []string {
	ensureInit()
	n := int(C.llama_chat_builtin_templates(nil, 0))
	if n <= 0 {
		return nil
	}
	out := make([]*C.char, n)
	C.llama_chat_builtin_templates(&out[0], C.size_t(n))
	names := make([]string, n)
	for i, p := range out {
		names[i] = C.GoString(p)
	}
	return names
}

// ApplyChatTemplate renders messages into a prompt with template tmpl, which is a
// built-in template name, a Jinja template that llama.cpp recognises, or "" for the
// model's own template. addAssistant appends the start of the assistant's turn.
// A template llama.cpp does not implement is ErrUnknownTemplate, never a guess.
func (m *Model) ApplyChatTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	if tmpl == "" {
		tmpl = m.info.ChatTemplate
		if tmpl == "" {
			return "", fmt.Errorf("engine: model %s has no chat template; set chat_template in its config (one of %s): %w",
				m.info.Name, strings.Join(BuiltinTemplates(), ", "), ErrUnknownTemplate)
		}
	}
	return ApplyChatTemplate(tmpl, msgs, addAssistant)
}

// ApplyChatTemplate renders messages with a named or Jinja template, without a model.
func ApplyChatTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	if len(msgs) == 0 {
		return "", fmt.Errorf("engine: chat template: no messages: %w", ErrInvalidArgument)
	}
	ensureInit()
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))
	cmsgs := make([]C.llama_chat_message, len(msgs))
	total := len(tmpl)
	for i, msg := range msgs {
		if strings.IndexByte(msg.Role, 0) >= 0 || strings.IndexByte(msg.Content, 0) >= 0 {
			return "", fmt.Errorf("engine: chat message %d contains a NUL byte: %w", i, ErrInvalidArgument)
		}
		r, c := C.CString(msg.Role), C.CString(msg.Content)
		defer C.free(unsafe.Pointer(r))
		defer C.free(unsafe.Pointer(c))
		cmsgs[i] = C.llama_chat_message{role: r, content: c}
		total += len(msg.Role) + len(msg.Content)
	}
	// C memory: llama.cpp keeps no pointer after the call, but the message array
	// holds C pointers so it may live in Go memory.
	buf := make([]byte, 2*total+256)
	for {
		n := C.llama_chat_apply_template(ctmpl, &cmsgs[0], C.size_t(len(cmsgs)), C.bool(addAssistant), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)))
		if n < 0 {
			return "", fmt.Errorf("engine: chat template %q: %w (built-in names: %s)", abbreviate(tmpl, 60), ErrUnknownTemplate, strings.Join(BuiltinTemplates(), ", "))
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, n)
	}
}

func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
