// Package vector stores the embeddings of document chunks and searches them by cosine
// similarity. Index is the one interface; its implementations are vector/embedded (the
// default: a file under the data directory, no service) and vector/qdrant (a Qdrant server
// over gRPC). vector/vectortest is the behaviour every implementation must show.
//
// A vector store of the OpenAI API is a StoreID here: every point carries the store it
// belongs to, and every query searches one store. Within a store all vectors have one
// dimension (the store's embedding model's); a point or query of another dimension is
// refused with ErrInvalid.
package vector

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
)

// ErrInvalid is wrapped by every error that is the caller's fault: an empty or mismatched
// vector, a bad filter, a missing id. The error text names the field.
var ErrInvalid = errors.New("invalid")

// ErrFull is wrapped by the error of an Upsert that would take an index beyond its
// configured size (embedded's max_points).
var ErrFull = errors.New("vector index full")

// MaxLimit is the most hits one Search returns.
const MaxLimit = 1000

// Point is one chunk's embedding with its payload.
type Point struct {
	// ID identifies the point across stores: a UUID in canonical lowercase form (Qdrant
	// accepts UUIDs or integers only). Upserting an existing ID replaces the point.
	// NewID and ChunkID make them.
	ID string
	// StoreID is the vector store the point belongs to.
	StoreID string
	// FileID is the file the chunk was cut from.
	FileID string
	// Chunk is the chunk's position in its file, from 0.
	Chunk int
	// Text is the chunk's text, returned with a hit.
	Text string
	// Attributes are the file's attributes, for filtering: string, float64 or bool values.
	Attributes map[string]any
	// Vector is the embedding; all points of one store have the same dimension.
	Vector []float32
}

// Hit is a search result: the point without its vector, and its cosine similarity to the
// query (from -1 to 1, higher is closer).
type Hit struct {
	Point
	Score float32
}

// Filter types: comparisons of one attribute with a value, and compounds of filters.
const (
	Eq  = "eq"  // the attribute equals Value
	Ne  = "ne"  // the attribute is missing or differs from Value
	Gt  = "gt"  // the attribute is a number greater than Value
	Gte = "gte" // the attribute is a number greater than or equal to Value
	Lt  = "lt"  // the attribute is a number less than Value
	Lte = "lte" // the attribute is a number less than or equal to Value
	In  = "in"  // the attribute equals one of Value's elements
	Nin = "nin" // the attribute is missing or equals none of Value's elements
	And = "and" // every one of Filters matches
	Or  = "or"  // at least one of Filters matches
)

// MaxFilterDepth is how deeply compound filters may nest.
const MaxFilterDepth = 8

// Filter is OpenAI's vector-store filter on a point's Attributes: a comparison {Type: eq,
// ne, gt, gte, lt, lte, in or nin; Key; Value} or a compound {Type: and or or; Filters}.
// Value is a string, a number or a bool for eq and ne, a number for gt, gte, lt and lte,
// and a non-empty list of strings or of numbers ([]any, []string or []float64) for in and
// nin. A comparison never matches an attribute of another type, except that ne and nin
// match it (it differs).
type Filter struct {
	Type    string
	Key     string
	Value   any
	Filters []Filter
}

// Validate reports the first bad part of the filter, naming it from "filters" (the OpenAI
// request field) down, as in `filters.filters[1].value`. The error wraps ErrInvalid.
func (f *Filter) Validate() error { return f.validate("filters", 0) }

func (f *Filter) validate(path string, depth int) error {
	if depth > MaxFilterDepth {
		return invalid(path, "compound filters nest more than %d deep", MaxFilterDepth)
	}
	switch f.Type {
	case And, Or:
		if len(f.Filters) == 0 {
			return invalid(path+".filters", "a %q filter needs at least one filter", f.Type)
		}
		for i := range f.Filters {
			if err := f.Filters[i].validate(fmt.Sprintf("%s.filters[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	case Eq, Ne, Gt, Gte, Lt, Lte, In, Nin:
	case "":
		return invalid(path+".type", "missing (eq, ne, gt, gte, lt, lte, in, nin, and, or)")
	default:
		return invalid(path+".type", "unknown filter type %q (eq, ne, gt, gte, lt, lte, in, nin, and, or)", f.Type)
	}
	if f.Key == "" {
		return invalid(path+".key", "missing: a comparison filter names an attribute")
	}
	if len(f.Filters) > 0 {
		return invalid(path+".filters", "only an \"and\" or \"or\" filter has filters")
	}
	switch f.Type {
	case Eq, Ne:
		if _, ok := scalar(f.Value); !ok {
			return invalid(path+".value", "%q needs a string, number or boolean, got %T", f.Type, f.Value)
		}
	case Gt, Gte, Lt, Lte:
		if _, ok := number(f.Value); !ok {
			return invalid(path+".value", "%q needs a number, got %T", f.Type, f.Value)
		}
	case In, Nin:
		if _, _, err := List(f.Value); err != nil {
			return invalid(path+".value", "%q %v", f.Type, err)
		}
	}
	return nil
}

// Match reports whether attrs satisfy the filter (nil matches everything). Call Validate
// first: a comparison with a value of the wrong type matches nothing.
func (f *Filter) Match(attrs map[string]any) bool {
	if f == nil {
		return true
	}
	switch f.Type {
	case And:
		for i := range f.Filters {
			if !f.Filters[i].Match(attrs) {
				return false
			}
		}
		return true
	case Or:
		for i := range f.Filters {
			if f.Filters[i].Match(attrs) {
				return true
			}
		}
		return false
	}
	got, present := attrs[f.Key]
	switch f.Type {
	case Eq:
		return present && equal(got, f.Value)
	case Ne:
		return !present || !equal(got, f.Value)
	case Gt, Gte, Lt, Lte:
		a, ok1 := number(got)
		b, ok2 := number(f.Value)
		if !present || !ok1 || !ok2 {
			return false
		}
		switch f.Type {
		case Gt:
			return a > b
		case Gte:
			return a >= b
		case Lt:
			return a < b
		default:
			return a <= b
		}
	case In, Nin:
		found := false
		if present {
			strs, nums, _ := List(f.Value)
			found = containsValue(got, strs, nums)
		}
		return found == (f.Type == In)
	}
	return false
}

func containsValue(v any, strs []string, nums []float64) bool {
	if s, ok := v.(string); ok {
		for _, x := range strs {
			if x == s {
				return true
			}
		}
		return false
	}
	if n, ok := number(v); ok {
		for _, x := range nums {
			if x == n {
				return true
			}
		}
	}
	return false
}

// List returns the elements of an in/nin filter's value: strings or numbers, not both.
func List(v any) (strs []string, nums []float64, err error) {
	switch l := v.(type) {
	case []string:
		strs = l
	case []float64:
		nums = l
	case []any:
		for _, e := range l {
			if s, ok := e.(string); ok {
				strs = append(strs, s)
			} else if n, ok := number(e); ok {
				nums = append(nums, n)
			} else {
				return nil, nil, fmt.Errorf("needs a list of strings or numbers, got an element of type %T", e)
			}
		}
	default:
		return nil, nil, fmt.Errorf("needs a list of strings or numbers, got %T", v)
	}
	if len(strs) > 0 && len(nums) > 0 {
		return nil, nil, errors.New("needs a list of strings or of numbers, not both")
	}
	if len(strs) == 0 && len(nums) == 0 {
		return nil, nil, errors.New("needs a non-empty list")
	}
	return strs, nums, nil
}

// Number returns v as a float64 when it is a Go number of any type.
func Number(v any) (float64, bool) { return number(v) }

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n)
	case float32:
		return float64(n), !math.IsNaN(float64(n))
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case interface{ Float64() (float64, error) }: // json.Number
		f, err := n.Float64()
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

// scalar normalizes a string, bool or number to string, bool or float64.
func scalar(v any) (any, bool) {
	switch x := v.(type) {
	case string, bool:
		return x, true
	}
	if n, ok := number(v); ok {
		return n, true
	}
	return nil, false
}

func equal(a, b any) bool {
	x, ok1 := scalar(a)
	y, ok2 := scalar(b)
	return ok1 && ok2 && x == y
}

// Query searches one store.
type Query struct {
	// StoreID is the store searched; required.
	StoreID string
	// Vector is the query's embedding, of the store's dimension.
	Vector []float32
	// Limit is the most hits returned, from 1 to MaxLimit.
	Limit int
	// Filter, when set, keeps only the points whose Attributes match it.
	Filter *Filter
	// ScoreThreshold leaves out the hits scoring below it. The zero value leaves out the
	// negative similarities (as OpenAI's ranking_options.score_threshold does); -1 keeps
	// every hit.
	ScoreThreshold float32
}

// Validate reports the first bad field of the query; the error wraps ErrInvalid. It does
// not know the store's dimension: the index checks that.
func (q *Query) Validate() error {
	if q.StoreID == "" {
		return invalid("store_id", "missing")
	}
	if err := checkVector("vector", q.Vector); err != nil {
		return err
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		return invalid("limit", "%d is out of range (1 to %d)", q.Limit, MaxLimit)
	}
	if math.IsNaN(float64(q.ScoreThreshold)) || q.ScoreThreshold < -1 || q.ScoreThreshold > 1 {
		return invalid("score_threshold", "%v is out of range (-1 to 1)", q.ScoreThreshold)
	}
	if q.Filter != nil {
		return q.Filter.Validate()
	}
	return nil
}

// Index stores and searches points. Implementations are safe for concurrent use.
type Index interface {
	// Upsert stores the points, replacing those with the same IDs. All points of one call
	// have the same dimension, that of their stores' existing points. The embedded index
	// stores all or none; the Qdrant backend sends large calls in batches, so a failed call
	// may have stored its first batches: upserting the same points again replaces them,
	// and DeleteFile removes a failed file's points.
	Upsert(ctx context.Context, points []Point) error
	// Search returns the store's points closest to the query vector by cosine similarity,
	// best first. A store with no points gives no hits.
	Search(ctx context.Context, q Query) ([]Hit, error)
	// DeleteFile removes the points of one file of a store.
	DeleteFile(ctx context.Context, storeID, fileID string) error
	// DeleteStore removes every point of a store.
	DeleteStore(ctx context.Context, storeID string) error
	// Count returns the number of points of a store ("" counts every store).
	Count(ctx context.Context, storeID string) (int, error)
	// Scroll calls fn with every point of a store ("" for every store), vector included, in
	// no particular order; an error from fn ends the scroll and is returned.
	Scroll(ctx context.Context, storeID string, fn func(Point) error) error
	// Check reports whether the index can serve (the health check).
	Check(ctx context.Context) error
	// Close releases the index.
	Close() error
}

// CheckPoints validates the points of one Upsert and returns their common dimension: every
// point has an ID (a UUID), a store, a file, a non-negative chunk and a non-empty, finite,
// non-zero vector of the same dimension as the first, and attributes of string, number or
// bool values. The error names the point by index and wraps ErrInvalid.
func CheckPoints(points []Point) (dim int, err error) {
	for i := range points {
		p := &points[i]
		field := func(name string) string { return fmt.Sprintf("points[%d].%s", i, name) }
		switch {
		case !IsID(p.ID):
			return 0, invalid(field("id"), "%q is not a lowercase UUID", p.ID)
		case p.StoreID == "":
			return 0, invalid(field("store_id"), "missing")
		case p.FileID == "":
			return 0, invalid(field("file_id"), "missing")
		case p.Chunk < 0:
			return 0, invalid(field("chunk"), "negative")
		}
		if err := checkVector(field("vector"), p.Vector); err != nil {
			return 0, err
		}
		if i == 0 {
			dim = len(p.Vector)
		} else if len(p.Vector) != dim {
			return 0, invalid(field("vector"), "dimension %d differs from the first point's %d", len(p.Vector), dim)
		}
		for k, v := range p.Attributes {
			if _, ok := scalar(v); !ok {
				return 0, invalid(field("attributes."+k), "a %T, not a string, number or boolean", v)
			}
		}
	}
	return dim, nil
}

// DimensionError is the error of a vector whose dimension is not its store's.
func DimensionError(field, storeID string, got, want int) error {
	return invalid(field, "dimension %d, but store %s holds vectors of dimension %d", got, storeID, want)
}

func checkVector(field string, v []float32) error {
	if len(v) == 0 {
		return invalid(field, "empty")
	}
	var sum float64
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return invalid(field, "element %d is not a finite number", i)
		}
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return invalid(field, "all zeros: it has no direction to compare")
	}
	return nil
}

// Normalize scales v to unit length in place, so that cosine similarity is a dot product.
func Normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i := range v {
		v[i] = float32(float64(v[i]) * inv)
	}
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// IsID reports whether s is a UUID in canonical lowercase form.
func IsID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// NewID returns a random point ID (a version 4 UUID).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return formatUUID(b, 4)
}

// ChunkID returns the point ID of one chunk of a file in a store, the same on every call,
// so that indexing a file again replaces its points instead of adding to them.
func ChunkID(storeID, fileID string, chunk int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", storeID, fileID, chunk))
	var b [16]byte
	copy(b[:], sum[:16])
	return formatUUID(b, 8)
}

// formatUUID sets the RFC 9562 version and variant bits and formats b.
func formatUUID(b [16]byte, version byte) string {
	b[6] = b[6]&0x0f | version<<4
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
