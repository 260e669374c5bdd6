package responses

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// The file_search tool: the server searches the caller's vector stores for this
// turn's question before the model answers, puts the chunks found into the model's
// context, and reports the search as a file_search_call output item.
const (
	ToolFileSearch     = "file_search"
	TypeFileSearchCall = "file_search_call"
)

// Stream events of a file search.
const (
	EventFileSearchInProgress = "response.file_search_call.in_progress"
	EventFileSearchSearching  = "response.file_search_call.searching"
	EventFileSearchCompleted  = "response.file_search_call.completed"
)

// Bounds of the file_search tool (OpenAI's max_num_results range).
const (
	defaultFileSearchResults = 10
	maxFileSearchResults     = 50
	maxFileSearchStores      = 10
)

// FileSearch is a request's file_search tool, checked, with the query it searches
// for: the text of the conversation's last user message.
type FileSearch struct {
	StoreIDs   []string
	MaxResults int
	Query      string
	// Filters are the tool's filters as sent (nil: none), checked by the search.
	Filters json.RawMessage
}

// FileSearchResult is one chunk a file search found (a file_search_call's results).
type FileSearchResult struct {
	FileID     string         `json:"file_id"`
	Filename   string         `json:"filename"`
	Score      float64        `json:"score"`
	Text       string         `json:"text"`
	Attributes map[string]any `json:"attributes"`
}

// FileSearchOf returns the request's file_search tool, or nil when it has none.
// history is the stored conversation the request continues (its last user message is
// the query when this turn has none).
func FileSearchOf(in *Input, history []Item) (*FileSearch, error) {
	var fs *FileSearch
	for i, t := range in.Tools {
		if t.Type != ToolFileSearch {
			continue
		}
		param := fmt.Sprintf("tools[%d]", i)
		if fs != nil {
			return nil, infer.Invalid(param+".type", "at most one file_search tool is allowed")
		}
		if len(t.VectorStoreIDs) == 0 || len(t.VectorStoreIDs) > maxFileSearchStores {
			return nil, infer.Invalid(param+".vector_store_ids", "file_search needs 1 to %d vector_store_ids", maxFileSearchStores)
		}
		fs = &FileSearch{StoreIDs: t.VectorStoreIDs, MaxResults: defaultFileSearchResults, Filters: t.Filters}
		if t.MaxNumResults != nil {
			if n := *t.MaxNumResults; n < 1 || n > maxFileSearchResults {
				return nil, infer.Invalid(param+".max_num_results", "max_num_results must be from 1 to %d, got %d", maxFileSearchResults, n)
			}
			fs.MaxResults = *t.MaxNumResults
		}
	}
	if fs == nil {
		return nil, nil
	}
	fs.Query = lastUserText(in.Items)
	if fs.Query == "" {
		fs.Query = lastUserText(history)
	}
	if strings.TrimSpace(fs.Query) == "" {
		return nil, infer.Invalid("input", "file_search searches for the last user message, and the conversation has none with text")
	}
	return fs, nil
}

// lastUserText is the text of the last user message of items.
func lastUserText(items []Item) string {
	for i := len(items) - 1; i >= 0; i-- {
		if it := items[i]; it.Type == TypeMessage && it.Role == chat.RoleUser {
			var b strings.Builder
			for _, p := range it.Content {
				b.WriteString(p.Text)
			}
			return b.String()
		}
	}
	return ""
}

// Ground puts the results into the request's context: a system message (the first
// one, extended, or a new first one) listing each chunk with its file name, so that
// every chat template accepts it.
func Ground(r *infer.ChatRequest, results []FileSearchResult) {
	var b strings.Builder
	if len(results) == 0 {
		b.WriteString("A search of the user's files found nothing relevant to the question.")
	} else {
		b.WriteString("Excerpts from the user's files, found by searching them for the question; answer from them and name the file you use.")
		for i, res := range results {
			fmt.Fprintf(&b, "\n\n[%d] %s:\n%s", i+1, res.Filename, strings.TrimSpace(res.Text))
		}
	}
	if len(r.Messages) > 0 && r.Messages[0].Role == chat.RoleSystem {
		r.Messages[0].Content += "\n\n" + b.String()
		return
	}
	r.Messages = append([]chat.Message{{Role: chat.RoleSystem, Content: b.String()}}, r.Messages...)
}

// FileSearched adds the completed file_search_call item (the first output item) and
// returns its stream events: output_item.added, the file_search_call's in_progress,
// searching and completed, and output_item.done.
func (b *Builder) FileSearched(query string, results []FileSearchResult) []Event {
	if results == nil {
		results = []FileSearchResult{}
	}
	out := b.add(nil, Item{Type: TypeFileSearchCall, ID: "fs_" + randomHex(), Queries: []string{query}})
	i := b.open
	id := b.resp.Output[i].ID
	out = append(out, b.event(Event{Type: EventFileSearchInProgress, OutputIndex: i, ItemID: id}),
		b.event(Event{Type: EventFileSearchSearching, OutputIndex: i, ItemID: id}))
	it := &b.resp.Output[i]
	it.Status, it.Results = StatusCompleted, results
	done := *it
	b.open = -1
	return append(out, b.event(Event{Type: EventFileSearchCompleted, OutputIndex: i, ItemID: id}),
		b.event(Event{Type: EventItemDone, OutputIndex: i, Item: &done}))
}
