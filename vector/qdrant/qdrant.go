// Package qdrant is the vector.Index on a Qdrant server, through its gRPC API
// (github.com/qdrant/go-client).
//
// Layout: one collection per embedding dimension, named hxp_chunks_<dim> (cosine distance,
// created on first use), holding the points of every store of that dimension, with keyword
// payload indexes on store_id (marked as the tenant key) and file_id. Qdrant's guidance for
// multitenancy is few collections partitioned by a payload field, not one collection per
// tenant: each collection carries its own HNSW graph, segments and optimizer, so thousands
// of small per-store collections cost memory and start-up time, while a tenant-keyed
// payload index lets Qdrant keep each store's points together and search them as fast as a
// collection of their own. A collection has one vector size, hence one per dimension (in
// practice one per embedding model).
//
// Payload of a point: store_id, file_id, chunk, text, and attributes (an object); a filter
// on attribute k is a condition on "attributes.k". Comparisons translate to Qdrant
// conditions: eq on a string or bool is a match, on a number a closed range [v, v]; gt, gte,
// lt, lte are ranges; in is a match of any keyword (numbers: one range each, any of them);
// ne and nin are the same conditions under must_not, so that a point without the attribute
// matches them (as in the embedded index); and/or are must/should.
//
// Attributes get no payload index: their keys and types are the API user's (an index
// is typed, and a key may hold strings in one file and numbers in another), and a filter
// on them runs within one store's points, which the tenant index on store_id already
// selects.
//
// Upserts are sent in batches (Options.BatchSize points per request, wait=true): a call
// that fails may have stored its first batches; upserting the same points again replaces
// them, and DeleteFile removes a file's partial points.
package qdrant

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	qc "github.com/qdrant/go-client/qdrant"

	"github.com/hxp-ai/hxp/vector"
)

// CollectionPrefix starts the name of every collection the backend creates; the
// dimension follows.
const CollectionPrefix = "hxp_chunks_"

// DefaultBatchSize is the number of points per upsert request when Options.BatchSize is 0.
const DefaultBatchSize = 256

// DefaultPort is Qdrant's gRPC port, used when Options.URL names none.
const DefaultPort = 6334

// scrollPage is the number of points per scroll request.
const scrollPage = 256

// Payload keys.
const (
	keyStore = "store_id"
	keyFile  = "file_id"
	keyChunk = "chunk"
	keyText  = "text"
	keyAttrs = "attributes"
)

// Options configure the connection to Qdrant.
type Options struct {
	// URL is the server's gRPC address: host:port, or a URL whose scheme is http, grpc
	// (plain) or https (TLS); the port defaults to 6334.
	URL string
	// APIKeyFile, when set, names a file holding the API key sent with every call. The key
	// is never logged.
	APIKeyFile string
	// TLS connects with TLS (implied by an https URL).
	TLS bool
	// TLSConfig, when set, replaces the default TLS settings (custom CA, client certificate).
	TLSConfig *tls.Config
	// BatchSize is the number of points per upsert request; 0 means DefaultBatchSize.
	BatchSize int
}

// Index is a vector.Index on Qdrant. It is safe for concurrent use.
type Index struct {
	client *qc.Client
	batch  int

	firstMu sync.Mutex // serializes the upserts that write a store of unknown dimension

	mu     sync.Mutex
	known  map[string]bool // collections known to exist, with their payload indexes
	dims   map[string]int  // store id → dimension, for stores seen with points
	closed bool
}

var _ vector.Index = (*Index)(nil)

// Open connects to the server. It sends nothing yet: Check asks the server's health.
func Open(opts Options) (*Index, error) {
	host, port, useTLS, err := parseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.BatchSize < 0 {
		return nil, fmt.Errorf("qdrant.batch_size: %d is negative (0 means %d)", opts.BatchSize, DefaultBatchSize)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	var key string
	if opts.APIKeyFile != "" {
		b, err := os.ReadFile(opts.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("qdrant.api_key_file: %w", err)
		}
		if key = strings.TrimSpace(string(b)); key == "" {
			return nil, fmt.Errorf("qdrant.api_key_file: %s is empty (write the key into it, or unset the field)", opts.APIKeyFile)
		}
	}
	client, err := qc.NewClient(&qc.Config{
		Host: host, Port: port, APIKey: key,
		UseTLS: useTLS || opts.TLS || opts.TLSConfig != nil, TLSConfig: opts.TLSConfig,
		SkipCompatibilityCheck: true, // it would call the server (for up to a minute) and log through slog
		PoolSize:               1,
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant client for %s:%d: %w", host, port, err)
	}
	return &Index{client: client, batch: opts.BatchSize, known: map[string]bool{}, dims: map[string]int{}}, nil
}

// parseURL splits a host:port or URL into host, port and whether it asks for TLS.
func parseURL(s string) (host string, port int, useTLS bool, err error) {
	if s == "" {
		return "", 0, false, errors.New("qdrant.url: missing (host:port of Qdrant's gRPC API, e.g. localhost:6334)")
	}
	hostport := s
	if strings.Contains(s, "://") {
		u, perr := url.Parse(s)
		if perr != nil {
			return "", 0, false, fmt.Errorf("qdrant.url: %w", perr)
		}
		switch u.Scheme {
		case "http", "grpc":
		case "https", "grpcs":
			useTLS = true
		default:
			return "", 0, false, fmt.Errorf("qdrant.url: scheme %q (use http, https, grpc or host:port)", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" {
			return "", 0, false, fmt.Errorf("qdrant.url: %q has a path; the gRPC API takes host:port only", s)
		}
		hostport = u.Host
	}
	host, ps, serr := net.SplitHostPort(hostport)
	if serr != nil {
		host, ps = hostport, strconv.Itoa(DefaultPort)
	}
	port, perr := strconv.Atoi(ps)
	if host == "" || perr != nil || port < 1 || port > 65535 {
		return "", 0, false, fmt.Errorf("qdrant.url: %q is not host:port", s)
	}
	return host, port, useTLS, nil
}

// Collection returns the name of the collection of vectors of dimension dim.
func Collection(dim int) string { return CollectionPrefix + strconv.Itoa(dim) }

// ensure creates the collection for dim, with its payload indexes, unless known to exist.
func (x *Index) ensure(ctx context.Context, dim int) (string, error) {
	name := Collection(dim)
	x.mu.Lock()
	ok := x.known[name]
	x.mu.Unlock()
	if ok {
		return name, nil
	}
	exists, err := x.client.CollectionExists(ctx, name)
	if err != nil {
		return "", fmt.Errorf("qdrant collection %s: %w", name, err)
	}
	if !exists {
		err := x.client.CreateCollection(ctx, &qc.CreateCollection{
			CollectionName: name,
			VectorsConfig:  qc.NewVectorsConfig(&qc.VectorParams{Size: uint64(dim), Distance: qc.Distance_Cosine}),
		})
		if err != nil {
			// Another node may have created it since we asked (Qdrant answers with an
			// invalid-argument error, not a code of its own): ask again.
			if again, _ := x.client.CollectionExists(ctx, name); !again {
				return "", fmt.Errorf("create qdrant collection %s: %w", name, err)
			}
		}
	}
	// Creating an index that exists is a no-op in Qdrant: no need to ask first.
	for _, f := range []struct {
		key    string
		tenant bool
	}{{keyStore, true}, {keyFile, false}} {
		_, err := x.client.CreateFieldIndex(ctx, &qc.CreateFieldIndexCollection{
			CollectionName:   name,
			Wait:             qc.PtrOf(true),
			FieldName:        f.key,
			FieldType:        qc.FieldType_FieldTypeKeyword.Enum(),
			FieldIndexParams: qc.NewPayloadIndexParamsKeyword(&qc.KeywordIndexParams{IsTenant: qc.PtrOf(f.tenant)}),
		})
		if err != nil {
			return "", fmt.Errorf("qdrant payload index %s.%s: %w", name, f.key, err)
		}
	}
	x.mu.Lock()
	x.known[name] = true
	x.mu.Unlock()
	return name, nil
}

// collections lists the backend's collections.
func (x *Index) collections(ctx context.Context) ([]string, error) {
	all, err := x.client.ListCollections(ctx)
	if err != nil {
		return nil, fmt.Errorf("list qdrant collections: %w", err)
	}
	var out []string
	for _, c := range all {
		if strings.HasPrefix(c, CollectionPrefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// storeDim returns the dimension of a store's points, 0 when it has none. A cached
// dimension equal to want is trusted; anything else is looked up.
func (x *Index) storeDim(ctx context.Context, storeID string, want int) (int, error) {
	x.mu.Lock()
	d, ok := x.dims[storeID]
	x.mu.Unlock()
	if ok && d == want {
		return d, nil
	}
	cols, err := x.collections(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range cols {
		n, err := x.client.Count(ctx, &qc.CountPoints{CollectionName: c, Filter: storeFilter(storeID), Exact: qc.PtrOf(true)})
		if err != nil {
			return 0, fmt.Errorf("count qdrant collection %s: %w", c, err)
		}
		if n > 0 {
			d, _ := strconv.Atoi(strings.TrimPrefix(c, CollectionPrefix))
			x.remember(storeID, d)
			return d, nil
		}
	}
	x.forget(storeID)
	return 0, nil
}

func (x *Index) remember(storeID string, dim int) {
	x.mu.Lock()
	x.dims[storeID] = dim
	x.mu.Unlock()
}

func (x *Index) forget(storeID string) {
	x.mu.Lock()
	delete(x.dims, storeID)
	x.mu.Unlock()
}

func storeFilter(storeID string) *qc.Filter {
	return &qc.Filter{Must: []*qc.Condition{qc.NewMatchKeyword(keyStore, storeID)}}
}

// Upsert stores the points in batches of Options.BatchSize.
func (x *Index) Upsert(ctx context.Context, points []vector.Point) error {
	if len(points) == 0 {
		return nil
	}
	dim, err := vector.CheckPoints(points)
	if err != nil {
		return err
	}
	if err := x.open(); err != nil {
		return err
	}
	// A store's first points fix its dimension: two first upserts of one store with
	// different dimensions must not both pass the check, so a call that writes a store
	// whose dimension is not known yet runs alone in this process (other nodes sharing the
	// server are not excluded).
	if !x.allKnown(points, dim) {
		x.firstMu.Lock()
		defer x.firstMu.Unlock()
	}
	checked := map[string]bool{}
	for i := range points {
		s := points[i].StoreID
		if checked[s] {
			continue
		}
		checked[s] = true
		d, err := x.storeDim(ctx, s, dim)
		if err != nil {
			return err
		}
		if d != 0 && d != dim {
			return vector.DimensionError(fmt.Sprintf("points[%d].vector", i), s, dim, d)
		}
	}
	name, err := x.ensure(ctx, dim)
	if err != nil {
		return err
	}
	structs := make([]*qc.PointStruct, len(points))
	for i := range points {
		structs[i] = toStruct(&points[i])
	}
	for lo := 0; lo < len(structs); lo += x.batch {
		hi := min(lo+x.batch, len(structs))
		if _, err := x.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: name, Wait: qc.PtrOf(true), Points: structs[lo:hi]}); err != nil {
			return fmt.Errorf("qdrant upsert of points %d to %d into %s: %w", lo, hi-1, name, err)
		}
	}
	for s := range checked {
		x.remember(s, dim)
	}
	return nil
}

// allKnown reports whether every store of the points is known to hold vectors of dim.
func (x *Index) allKnown(points []vector.Point, dim int) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range points {
		if x.dims[points[i].StoreID] != dim {
			return false
		}
	}
	return true
}

func toStruct(p *vector.Point) *qc.PointStruct {
	payload := map[string]*qc.Value{
		keyStore: qc.NewValueString(p.StoreID),
		keyFile:  qc.NewValueString(p.FileID),
		keyChunk: qc.NewValueInt(int64(p.Chunk)),
		keyText:  qc.NewValueString(p.Text),
	}
	if len(p.Attributes) > 0 {
		fields := make(map[string]*qc.Value, len(p.Attributes))
		for k, v := range p.Attributes {
			switch v := v.(type) {
			case string:
				fields[k] = qc.NewValueString(v)
			case bool:
				fields[k] = qc.NewValueBool(v)
			default: // a number: CheckPoints let nothing else through
				n, _ := vector.Number(v)
				fields[k] = qc.NewValueDouble(n)
			}
		}
		payload[keyAttrs] = qc.NewValueFromFields(fields)
	}
	return &qc.PointStruct{Id: qc.NewIDUUID(p.ID), Payload: payload, Vectors: qc.NewVectorsDense(p.Vector)}
}

// Search queries the store's collection.
func (x *Index) Search(ctx context.Context, q vector.Query) ([]vector.Hit, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := x.open(); err != nil {
		return nil, err
	}
	d, err := x.storeDim(ctx, q.StoreID, len(q.Vector))
	if err != nil || d == 0 {
		return nil, err
	}
	if d != len(q.Vector) {
		return nil, vector.DimensionError("vector", q.StoreID, len(q.Vector), d)
	}
	filter := storeFilter(q.StoreID)
	if q.Filter != nil {
		filter.Must = append(filter.Must, condition(q.Filter))
	}
	res, err := x.client.Query(ctx, &qc.QueryPoints{
		CollectionName: Collection(d),
		Query:          qc.NewQueryDense(q.Vector),
		Filter:         filter,
		Limit:          qc.PtrOf(uint64(q.Limit)),
		ScoreThreshold: qc.PtrOf(q.ScoreThreshold),
		WithPayload:    qc.NewWithPayload(true),
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant search of store %s: %w", q.StoreID, err)
	}
	hits := make([]vector.Hit, len(res))
	for i, r := range res {
		hits[i] = vector.Hit{Point: fromPayload(r.GetId(), r.GetPayload()), Score: r.GetScore()}
	}
	return hits, nil
}

// condition translates a validated filter (see the package comment).
func condition(f *vector.Filter) *qc.Condition {
	switch f.Type {
	case vector.And, vector.Or:
		conds := make([]*qc.Condition, len(f.Filters))
		for i := range f.Filters {
			conds[i] = condition(&f.Filters[i])
		}
		if f.Type == vector.And {
			return qc.NewFilterAsCondition(&qc.Filter{Must: conds})
		}
		return qc.NewFilterAsCondition(&qc.Filter{Should: conds})
	}
	key := keyAttrs + "." + f.Key
	switch f.Type {
	case vector.Eq:
		return equals(key, f.Value)
	case vector.Ne:
		return qc.NewFilterAsCondition(&qc.Filter{MustNot: []*qc.Condition{equals(key, f.Value)}})
	case vector.In:
		return anyOf(key, f.Value)
	case vector.Nin:
		return qc.NewFilterAsCondition(&qc.Filter{MustNot: []*qc.Condition{anyOf(key, f.Value)}})
	}
	n, _ := vector.Number(f.Value)
	r := &qc.Range{}
	switch f.Type {
	case vector.Gt:
		r.Gt = &n
	case vector.Gte:
		r.Gte = &n
	case vector.Lt:
		r.Lt = &n
	default:
		r.Lte = &n
	}
	return qc.NewRange(key, r)
}

func equals(key string, v any) *qc.Condition {
	switch v := v.(type) {
	case string:
		return qc.NewMatchKeyword(key, v)
	case bool:
		return qc.NewMatchBool(key, v)
	}
	n, _ := vector.Number(v)
	return qc.NewRange(key, &qc.Range{Gte: &n, Lte: &n})
}

func anyOf(key string, v any) *qc.Condition {
	strs, nums, _ := vector.List(v)
	if len(strs) > 0 {
		return qc.NewMatchKeywords(key, strs...)
	}
	conds := make([]*qc.Condition, len(nums))
	for i := range nums {
		conds[i] = qc.NewRange(key, &qc.Range{Gte: &nums[i], Lte: &nums[i]})
	}
	return qc.NewFilterAsCondition(&qc.Filter{Should: conds})
}

// fromPayload reads a point back (without its vector).
func fromPayload(id *qc.PointId, payload map[string]*qc.Value) vector.Point {
	p := vector.Point{
		ID:      id.GetUuid(),
		StoreID: payload[keyStore].GetStringValue(),
		FileID:  payload[keyFile].GetStringValue(),
		Chunk:   int(payload[keyChunk].GetIntegerValue()),
		Text:    payload[keyText].GetStringValue(),
	}
	if fields := payload[keyAttrs].GetStructValue().GetFields(); len(fields) > 0 {
		p.Attributes = make(map[string]any, len(fields))
		for k, v := range fields {
			switch kind := v.GetKind().(type) {
			case *qc.Value_StringValue:
				p.Attributes[k] = kind.StringValue
			case *qc.Value_BoolValue:
				p.Attributes[k] = kind.BoolValue
			case *qc.Value_DoubleValue:
				p.Attributes[k] = kind.DoubleValue
			case *qc.Value_IntegerValue:
				p.Attributes[k] = float64(kind.IntegerValue)
			}
		}
	}
	return p
}

// DeleteFile removes the points of one file of a store, in every collection.
func (x *Index) DeleteFile(ctx context.Context, storeID, fileID string) error {
	if storeID == "" || fileID == "" {
		return fmt.Errorf("%w: store_id and file_id: both required", vector.ErrInvalid)
	}
	f := storeFilter(storeID)
	f.Must = append(f.Must, qc.NewMatchKeyword(keyFile, fileID))
	return x.deleteWhere(ctx, f)
}

// DeleteStore removes every point of a store, in every collection.
func (x *Index) DeleteStore(ctx context.Context, storeID string) error {
	if storeID == "" {
		return fmt.Errorf("%w: store_id: missing", vector.ErrInvalid)
	}
	if err := x.deleteWhere(ctx, storeFilter(storeID)); err != nil {
		return err
	}
	x.forget(storeID)
	return nil
}

func (x *Index) deleteWhere(ctx context.Context, f *qc.Filter) error {
	if err := x.open(); err != nil {
		return err
	}
	cols, err := x.collections(ctx)
	if err != nil {
		return err
	}
	for _, c := range cols {
		if _, err := x.client.Delete(ctx, &qc.DeletePoints{CollectionName: c, Wait: qc.PtrOf(true), Points: qc.NewPointsSelectorFilter(f)}); err != nil {
			return fmt.Errorf("qdrant delete in %s: %w", c, err)
		}
	}
	return nil
}

// Count returns the exact number of points of a store ("" for all stores).
func (x *Index) Count(ctx context.Context, storeID string) (int, error) {
	if err := x.open(); err != nil {
		return 0, err
	}
	cols, err := x.collections(ctx)
	if err != nil {
		return 0, err
	}
	var f *qc.Filter
	if storeID != "" {
		f = storeFilter(storeID)
	}
	total := 0
	for _, c := range cols {
		n, err := x.client.Count(ctx, &qc.CountPoints{CollectionName: c, Filter: f, Exact: qc.PtrOf(true)})
		if err != nil {
			return 0, fmt.Errorf("count qdrant collection %s: %w", c, err)
		}
		total += int(n)
	}
	return total, nil
}

// Scroll pages through the store's points (every store's for "") in every collection.
func (x *Index) Scroll(ctx context.Context, storeID string, fn func(vector.Point) error) error {
	if err := x.open(); err != nil {
		return err
	}
	cols, err := x.collections(ctx)
	if err != nil {
		return err
	}
	var f *qc.Filter
	if storeID != "" {
		f = storeFilter(storeID)
	}
	for _, c := range cols {
		var offset *qc.PointId
		for {
			page, next, err := x.client.ScrollAndOffset(ctx, &qc.ScrollPoints{
				CollectionName: c, Filter: f, Offset: offset, Limit: qc.PtrOf(uint32(scrollPage)),
				WithPayload: qc.NewWithPayload(true), WithVectors: qc.NewWithVectors(true),
			})
			if err != nil {
				return fmt.Errorf("qdrant scroll of %s: %w", c, err)
			}
			for _, r := range page {
				p := fromPayload(r.GetId(), r.GetPayload())
				p.Vector = r.GetVectors().GetVector().GetDenseVector().GetData()
				if err := fn(p); err != nil {
					return err
				}
			}
			if next == nil {
				break
			}
			offset = next
		}
	}
	return nil
}

// Check calls the server's health check.
func (x *Index) Check(ctx context.Context) error {
	if err := x.open(); err != nil {
		return err
	}
	if _, err := x.client.HealthCheck(ctx); err != nil {
		return fmt.Errorf("qdrant health check: %w", err)
	}
	return nil
}

// Close closes the connection.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	return x.client.Close()
}

// ErrClosed is returned by calls on a closed index.
var ErrClosed = errors.New("qdrant vector index closed")

func (x *Index) open() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return ErrClosed
	}
	return nil
}
