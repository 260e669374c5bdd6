package chat

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// EventKind says what an Event carries.
type EventKind int

// Event kinds.
const (
	// EventContent is a piece of the answer's text (Text).
	EventContent EventKind = iota + 1
	// EventReasoning is a piece of the thinking block's text (Text).
	EventReasoning
	// EventToolCall opens call Index with its ID and Name (OpenAI's first
	// delta.tool_calls[] entry of a call).
	EventToolCall
	// EventToolArgs is a fragment (Text) of call Index's arguments JSON.
	EventToolArgs
)

// Event is one piece of a streamed answer, in output order.
type Event struct {
	Kind EventKind
	// Text is the content, reasoning or arguments fragment.
	Text string
	// Index, ID and Name identify the call (EventToolCall; Index for EventToolArgs).
	Index    int
	ID, Name string
}

// ToolCallError is a tool call the model opened (its EventToolCall was sent)
// but did not finish as valid JSON: cut by max_tokens, or malformed output
// without a grammar.
type ToolCallError struct {
	Index  int
	Name   string
	Reason string
}

func (e *ToolCallError) Error() string {
	return fmt.Sprintf("tool call %d (%s): %s", e.Index, e.Name, e.Reason)
}

// ParserOptions configure a Parser for one response.
type ParserOptions struct {
	// Tools are the offered tools. None (tool_choice none, or no tools): every
	// text is content and no call is parsed. A call to a function not offered
	// stays content.
	Tools []Tool
	// Reasoning is the model's thinking block (DetectReasoning), nil for none.
	Reasoning *Reasoning
	// InReasoning: the prompt opened the thinking block (Reasoning.PromptOpens),
	// so the output starts inside it.
	InReasoning bool
	// NewID makes call ids; nil: "call_" and 24 random letters and digits (9
	// letters and digits for ToolFormatMistral). Ids are unique per response.
	NewID func() string
}

// Parser splits a model's streamed output into content, reasoning and tool-call
// events. The events do not depend on how the text is cut into deltas, except
// for where text pieces are split. Text that may be the start of a trigger or
// tag is held back until decided.
//
// Whitespace: leading whitespace of the content and of the reasoning is
// dropped, as is whitespace right before a tool call, before the end of the
// thinking block, and at the end of a response that made calls.
//
// Malformed calls: a call that fails before its EventToolCall was sent (invalid
// JSON, no name, a function not offered) is given back as content, trigger
// included. One that fails after (invalid arguments, cut off) makes Close
// return a *ToolCallError.
type Parser struct {
	format  ToolFormat
	spec    formatSpec
	opts    ParserOptions
	mode    parserMode
	buf     string
	content channel
	think   channel
	call    *callMachine
	calls   []ToolCall
	ids     map[string]bool
	events  []Event
	err     error
}

type parserMode int

const (
	modeStart parserMode = iota
	modeReasoning
	modeContent
	modeCall
	modeFailed
)

// NewParser starts parsing one response in this format.
func (f ToolFormat) NewParser(opts ParserOptions) *Parser {
	p := &Parser{
		format: f, spec: f.spec(), opts: opts, ids: map[string]bool{},
		content: channel{kind: EventContent}, think: channel{kind: EventReasoning},
	}
	switch {
	case opts.Reasoning != nil && opts.InReasoning:
		p.mode = modeReasoning
	case opts.Reasoning != nil:
		p.mode = modeStart
	default:
		p.mode = modeContent
	}
	return p
}

// Feed parses the next piece of output and returns the events it completes.
func (p *Parser) Feed(delta string) []Event {
	p.buf += delta
	// An incomplete UTF-8 character at the end waits for its other bytes.
	cut := len(p.buf)
	for k := 1; k <= utf8.UTFMax-1 && k <= len(p.buf); k++ {
		if c := p.buf[len(p.buf)-k]; c >= 0xc0 {
			if !utf8.FullRuneInString(p.buf[len(p.buf)-k:]) {
				cut = len(p.buf) - k
			}
			break
		} else if c < 0x80 {
			break
		}
	}
	rest := p.buf[cut:]
	p.buf = p.buf[:cut]
	p.run(false)
	p.buf += rest
	return p.take()
}

// Close ends the output and returns the last events. Its error is a
// *ToolCallError when a call was opened but not finished.
func (p *Parser) Close() ([]Event, error) {
	p.run(true)
	if p.mode == modeCall {
		p.call.finish(p)
	}
	if p.err == nil {
		if len(p.calls) > 0 {
			p.content.ws = ""
		}
		p.content.flush(p)
	}
	return p.take(), p.err
}

// Calls are the complete tool calls, arguments as JSON object text (Llama's
// "parameters" included); call it after Close.
func (p *Parser) Calls() []ToolCall { return p.calls }

func (p *Parser) take() []Event {
	ev := p.events
	p.events = nil
	return ev
}

func (p *Parser) emit(e Event) {
	if n := len(p.events); n > 0 && e.Kind != EventToolCall && p.events[n-1].Kind == e.Kind && p.events[n-1].Index == e.Index {
		p.events[n-1].Text += e.Text
		return
	}
	p.events = append(p.events, e)
}

func (p *Parser) run(final bool) {
	for {
		before, mode := len(p.buf), p.mode
		switch p.mode {
		case modeStart:
			p.start(final)
		case modeReasoning:
			p.reasoning(final)
		case modeContent:
			p.contentText(final)
		case modeCall:
			p.callText()
		case modeFailed:
			p.buf = ""
		}
		if len(p.buf) == before && p.mode == mode {
			return
		}
	}
}

// start decides whether the output opens with the thinking block.
func (p *Parser) start(final bool) {
	open := p.opts.Reasoning.Open
	rest := strings.TrimLeft(p.buf, spaces)
	switch {
	case strings.HasPrefix(rest, open):
		p.buf = rest[len(open):]
		p.mode = modeReasoning
	case strings.HasPrefix(open, rest) && !final:
		// undecided: wait for more
	default:
		p.mode = modeContent
	}
}

func (p *Parser) reasoning(final bool) {
	end := p.opts.Reasoning.Close
	if i := strings.Index(p.buf, end); i >= 0 {
		p.think.write(p, p.buf[:i])
		p.think.ws = ""
		p.buf = p.buf[i+len(end):]
		p.mode = modeContent
		return
	}
	keep := 0
	if !final {
		keep = heldPrefix(p.buf, []string{end})
	}
	p.think.write(p, p.buf[:len(p.buf)-keep])
	p.buf = p.buf[len(p.buf)-keep:]
	if final {
		p.think.ws = ""
	}
}

func (p *Parser) contentText(final bool) {
	if len(p.opts.Tools) == 0 {
		p.content.write(p, p.buf)
		p.buf = ""
		return
	}
	at, which := -1, trigger{}
	for _, t := range p.spec.triggers {
		if i := strings.Index(p.buf, t.text); i >= 0 && (at < 0 || i < at) {
			at, which = i, t
		}
	}
	if at >= 0 {
		p.content.write(p, p.buf[:at])
		p.buf = p.buf[at+len(which.text):]
		p.call = newCallMachine(p, which)
		p.mode = modeCall
		return
	}
	keep := 0
	if !final {
		keep = heldPrefix(p.buf, p.format.Triggers())
	}
	p.content.write(p, p.buf[:len(p.buf)-keep])
	p.buf = p.buf[len(p.buf)-keep:]
}

func (p *Parser) callText() {
	for p.mode == modeCall && p.buf != "" {
		c := p.buf[0]
		switch p.call.feed(p, c) {
		case stepTaken:
			p.buf = p.buf[1:]
		case stepDone:
			p.buf = p.buf[1:]
			p.mode = modeContent
		case stepDoneBefore:
			p.mode = modeContent
		case stepFailed:
			p.call.fail(p, "")
		}
	}
}

// heldPrefix is the length of the longest end of s that begins one of words.
func heldPrefix(s string, words []string) int {
	best := 0
	for _, w := range words {
		for n := min(len(w)-1, len(s)); n > best; n-- {
			if strings.HasSuffix(s, w[:n]) {
				best = n
				break
			}
		}
	}
	return best
}

const spaces = " \t\r\n"

// channel sends content or reasoning text, holding trailing whitespace until
// more text follows.
type channel struct {
	kind    EventKind
	started bool
	ws      string
}

func (c *channel) write(p *Parser, s string) {
	text := c.ws + s
	body := strings.TrimRight(text, spaces)
	trailing := text[len(body):]
	if !c.started {
		body = strings.TrimLeft(body, spaces)
	}
	if body == "" {
		if c.started {
			c.ws = text
		}
		return
	}
	p.emit(Event{Kind: c.kind, Text: body})
	c.started = true
	c.ws = trailing
}

func (c *channel) flush(p *Parser) {
	if c.ws != "" {
		p.emit(Event{Kind: c.kind, Text: c.ws})
		c.ws = ""
	}
}

// newID makes a call id unique in this response.
func (p *Parser) newID() string {
	for {
		var id string
		switch {
		case p.opts.NewID != nil:
			id = p.opts.NewID()
		case p.format == ToolFormatMistral:
			id = randomAlnum(9)
		default:
			id = "call_" + randomAlnum(24)
		}
		if !p.ids[id] {
			p.ids[id] = true
			return id
		}
	}
}

func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// step is what a byte did to a call.
type step int

const (
	stepTaken      step = iota // part of the call
	stepDone                   // the last byte of the calls
	stepDoneBefore             // the calls ended before this byte
	stepFailed                 // not a valid call: the byte is not taken
)

// callMachine reads the calls after one trigger, byte by byte.
type callMachine struct {
	spec  formatSpec
	raw   strings.Builder // the text taken since the trigger (trigger included) or the last call
	phase callPhase
	lits  []string // literals still expected in phasePrefix / phaseSuffix
	pos   int      // bytes of lits[0] matched
	list  bool
	obj   *objectScanner
	// committed: the object just ended is a call; forget its text.
	committed bool
}

type callPhase int

const (
	phasePrefix callPhase = iota
	phaseObject
	phaseAfter
	phaseSuffix
)

func newCallMachine(p *Parser, t trigger) *callMachine {
	m := &callMachine{spec: p.spec, phase: phasePrefix, lits: p.spec.prefix, list: p.spec.list}
	m.raw.WriteString(t.text)
	if t.inObject {
		m.phase = phaseObject
		m.obj = newObjectScanner(p)
		for i := 0; i < len(t.text); i++ {
			m.obj.feed(p, t.text[i])
		}
	}
	return m
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (m *callMachine) feed(p *Parser, c byte) step {
	s := m.step(p, c)
	if s == stepTaken || s == stepDone {
		m.raw.WriteByte(c)
	}
	if m.committed {
		m.raw.Reset()
		m.committed = false
	}
	return s
}

func (m *callMachine) step(p *Parser, c byte) step {
	switch m.phase {
	case phasePrefix:
		if len(m.lits) == 0 {
			if isSpace(c) {
				return stepTaken
			}
			m.phase = phaseObject
			m.obj = newObjectScanner(p)
			return m.step(p, c)
		}
		if m.spec.optionalList && m.lits[0] == "[" && m.pos == 0 && c == '{' {
			m.list = false
			m.lits = nil
			return m.step(p, c)
		}
		return m.literal(c, phaseObject)
	case phaseObject:
		switch m.obj.feed(p, c) {
		case stepFailed:
			return stepFailed
		case stepDone:
			if !m.obj.commit(p) {
				return stepFailed
			}
			m.committed = true
			m.phase = phaseAfter
		}
		return stepTaken
	case phaseAfter:
		switch {
		case isSpace(c):
			return stepTaken
		case m.list && c == ',':
			m.phase = phaseObject
			m.obj = newObjectScanner(p)
			return stepTaken
		case m.list && c == ']':
			m.phase, m.lits, m.pos = phaseSuffix, m.spec.suffix, 0
		default:
			m.phase, m.lits, m.pos = phaseSuffix, m.spec.suffix, 0
			return m.step(p, c)
		}
		if len(m.lits) == 0 {
			return stepDone
		}
		return stepTaken
	case phaseSuffix:
		if len(m.lits) == 0 {
			return stepDoneBefore
		}
		s := m.literal(c, phaseSuffix)
		if s == stepTaken && len(m.lits) == 0 {
			return stepDone
		}
		if s == stepFailed && m.pos == 0 {
			// The calls are complete; what follows is not their closing tag:
			// accept them and read the rest as content.
			m.lits = nil
			return stepDoneBefore
		}
		return s
	}
	return stepFailed
}

// literal matches c against the expected literals (whitespace allowed before
// each); next is the phase after the last one.
func (m *callMachine) literal(c byte, next callPhase) step {
	if m.pos == 0 && isSpace(c) {
		return stepTaken
	}
	if c != m.lits[0][m.pos] {
		return stepFailed
	}
	m.pos++
	if m.pos == len(m.lits[0]) {
		m.lits, m.pos = m.lits[1:], 0
		if len(m.lits) == 0 && next == phaseObject {
			m.phase = phasePrefix // the object comes after optional whitespace
		}
	}
	return stepTaken
}

// fail ends a call that cannot be read: as content when nothing of it was
// sent, else as the parser's error.
func (m *callMachine) fail(p *Parser, reason string) {
	if m.phase == phaseAfter || m.phase == phaseSuffix {
		// The calls before are complete; the rest is content.
		p.mode = modeContent
		return
	}
	if m.obj != nil && m.obj.index >= 0 {
		if reason == "" {
			reason = "invalid JSON in the call"
		}
		p.err = &ToolCallError{Index: m.obj.index, Name: m.obj.name, Reason: reason}
		p.mode = modeFailed
		return
	}
	p.content.write(p, m.raw.String())
	p.mode = modeContent
}

// finish ends the output inside a call.
func (m *callMachine) finish(p *Parser) {
	if m.phase == phaseAfter || m.phase == phaseSuffix {
		p.mode = modeContent // complete calls without their closing text
		return
	}
	m.fail(p, "the output ended inside the call")
	if p.mode == modeContent {
		p.contentText(true)
	}
}

// objectScanner reads one call object {"name": ..., "arguments": {...}, ...}
// byte by byte, sending EventToolCall once the name is known and the
// arguments as they come.
type objectScanner struct {
	state    objState
	key      strings.Builder
	val      valueScanner
	curKey   string
	seen     map[string]bool
	nameRaw  strings.Builder
	name     string
	args     strings.Builder
	argsSent int
	index    int // the call's index once its EventToolCall was sent, else -1
	id       string
	argsKey  string
}

type objState int

const (
	objOpen objState = iota
	objKeyOrEnd
	objKey
	objInKey
	objColon
	objValue
	objInValue
	objCommaOrEnd
	objDone
)

func newObjectScanner(p *Parser) *objectScanner {
	return &objectScanner{index: -1, seen: map[string]bool{}, argsKey: p.spec.argsKey}
}

func (o *objectScanner) feed(p *Parser, c byte) step {
	switch o.state {
	case objOpen:
		return o.expect(c, '{', objKeyOrEnd)
	case objKeyOrEnd, objKey:
		switch {
		case isSpace(c):
		case c == '"':
			o.key.Reset()
			o.key.WriteByte(c)
			o.state = objInKey
		case c == '}' && o.state == objKeyOrEnd:
			o.state = objDone
			return stepDone
		default:
			return stepFailed
		}
	case objInKey:
		o.key.WriteByte(c)
		if c == '"' && !escaped(o.key.String()) {
			var k string
			if json.Unmarshal([]byte(o.key.String()), &k) != nil || o.seen[k] {
				return stepFailed
			}
			o.seen[k] = true
			o.curKey = k
			o.state = objColon
		}
	case objColon:
		return o.expect(c, ':', objValue)
	case objValue:
		if isSpace(c) {
			return stepTaken
		}
		o.val = valueScanner{}
		o.state = objInValue
		return o.feed(p, c)
	case objInValue:
		switch o.val.feed(c) {
		case stepFailed:
			return stepFailed
		case stepDoneBefore:
			if !o.endValue(p) {
				return stepFailed
			}
			o.state = objCommaOrEnd
			return o.feed(p, c)
		case stepDone:
			o.value(p, c)
			if !o.endValue(p) {
				return stepFailed
			}
			o.state = objCommaOrEnd
		default:
			o.value(p, c)
		}
	case objCommaOrEnd:
		switch {
		case isSpace(c):
		case c == ',':
			o.state = objKey
		case c == '}':
			o.state = objDone
			return stepDone
		default:
			return stepFailed
		}
	default:
		return stepFailed
	}
	return stepTaken
}

// expect takes whitespace, then want, which moves to state next.
func (o *objectScanner) expect(c, want byte, next objState) step {
	switch {
	case isSpace(c):
	case c == want:
		o.state = next
	default:
		return stepFailed
	}
	return stepTaken
}

// escaped reports whether the closing quote at the end of s is escaped.
func escaped(s string) bool {
	n := 0
	for i := len(s) - 2; i >= 0 && s[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1 || len(s) < 2
}

// value takes one byte of the current key's value.
func (o *objectScanner) value(p *Parser, c byte) {
	switch o.curKey {
	case "name":
		o.nameRaw.WriteByte(c)
	case o.argsKey, "arguments":
		if o.seen[o.argsKey] && o.seen["arguments"] && o.argsKey != "arguments" {
			return // both keys: commit refuses the call
		}
		o.args.WriteByte(c)
		if o.index >= 0 && o.args.String()[0] != '"' {
			p.emit(Event{Kind: EventToolArgs, Index: o.index, Text: string([]byte{c})})
			o.argsSent = o.args.Len()
		}
	}
}

// endValue closes the current key's value: the name opens the call.
func (o *objectScanner) endValue(p *Parser) bool {
	if o.curKey != "name" {
		return true
	}
	if json.Unmarshal([]byte(o.nameRaw.String()), &o.name) != nil || !offered(p.opts.Tools, o.name) {
		return false
	}
	o.index = len(p.calls)
	o.id = p.newID()
	p.emit(Event{Kind: EventToolCall, Index: o.index, ID: o.id, Name: o.name})
	if o.args.Len() > 0 && o.args.String()[0] != '"' {
		p.emit(Event{Kind: EventToolArgs, Index: o.index, Text: o.args.String()})
		o.argsSent = o.args.Len()
	}
	return true
}

func offered(tools []Tool, name string) bool {
	for _, t := range tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// commit checks the finished object and adds its call.
func (o *objectScanner) commit(p *Parser) bool {
	if o.index < 0 {
		return false // no name
	}
	if o.seen[o.argsKey] && o.seen["arguments"] && o.argsKey != "arguments" {
		p.err = &ToolCallError{Index: o.index, Name: o.name, Reason: "both " + o.argsKey + " and arguments"}
		p.mode = modeFailed
		return true
	}
	args := o.args.String()
	if strings.HasPrefix(args, `"`) { // arguments given as a JSON string
		var s string
		if json.Unmarshal([]byte(args), &s) != nil {
			return false
		}
		args = s
	}
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	if !json.Valid([]byte(args)) || !strings.HasPrefix(strings.TrimSpace(args), "{") {
		p.err = &ToolCallError{Index: o.index, Name: o.name, Reason: "arguments are not a JSON object"}
		p.mode = modeFailed
		return true
	}
	if o.argsSent == 0 { // not streamed: a JSON string, or none
		p.emit(Event{Kind: EventToolArgs, Index: o.index, Text: args[o.argsSent:]})
	}
	p.calls = append(p.calls, ToolCall{ID: o.id, Name: o.name, Arguments: args})
	return true
}

// valueScanner finds the end of one JSON value, byte by byte.
type valueScanner struct {
	started, inString, escape, scalar bool
	depth                             int
}

func (v *valueScanner) feed(c byte) step {
	if !v.started {
		v.started = true
		switch c {
		case '{', '[':
			v.depth = 1
		case '"':
			v.inString = true
		default:
			if !strings.ContainsRune("-0123456789tfn", rune(c)) {
				return stepFailed
			}
			v.scalar = true
		}
		return stepTaken
	}
	if v.scalar {
		if isSpace(c) || c == ',' || c == '}' || c == ']' {
			return stepDoneBefore
		}
		return stepTaken
	}
	if v.inString {
		switch {
		case v.escape:
			v.escape = false
		case c == '\\':
			v.escape = true
		case c == '"':
			v.inString = false
			if v.depth == 0 {
				return stepDone
			}
		}
		return stepTaken
	}
	switch c {
	case '"':
		v.inString = true
	case '{', '[':
		v.depth++
	case '}', ']':
		v.depth--
		if v.depth == 0 {
			return stepDone
		}
	}
	return stepTaken
}
