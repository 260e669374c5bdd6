// Package qdranttest is an in-process STAND-IN for a Qdrant server, for tests and
// benchmarks where no Qdrant can run (no registry these machines reach serves one). It is
// not Qdrant: it serves the go-client module's own generated gRPC interfaces (Qdrant,
// Collections and Points services) on a loopback port and implements, with Qdrant's
// documented semantics, exactly the calls the vector/qdrant backend makes:
//
//   - HealthCheck; CollectionExists, Create (cosine, one unnamed dense vector), List,
//     Delete; CreateFieldIndex (a keyword index partitions the points by value, so that
//     a filter that must match one value scans only its points; no effect on results);
//   - Upsert (a point replaces the one of the same id, whole; the vector's dimension must
//     be the collection's; cosine vectors are stored normalized, as Qdrant does);
//   - Query (nearest dense vector, filter, limit, score_threshold: scores below it are
//     left out, best first), Scroll (ordered by id, offset = first id of the page,
//     next_page_offset = first id of the next), Count (exact), Delete (by filter or ids);
//   - filters: must (all), should (at least one, when any), must_not (none); conditions:
//     field match (keyword, bool, integer, any keywords, any integers, except), range
//     (numbers only; a field of another type or missing does not match), nested filters
//     and has_id; keys address nested objects with dots ("attributes.lang").
//
// Everything else answers Unimplemented. With Options.APIKey set, a call without the
// matching "api-key" metadata is refused with Unauthenticated, as Qdrant does.
package qdranttest

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/internal/exact"
)

// Version is what the stand-in's health check reports.
const Version = "1.17.0-hxp-standin"

// Options configure a stand-in.
type Options struct {
	// APIKey, when set, is required in every call's "api-key" metadata.
	APIKey string
}

// Server is a running stand-in.
type Server struct {
	// Addr is the loopback host:port it listens on.
	Addr string

	grpc *grpc.Server
	st   *state
}

// Start serves a new, empty stand-in on a loopback port until the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("qdrant stand-in: listen: %v", err)
	}
	st := &state{collections: map[string]*collection{}}
	srv := grpc.NewServer(
		// The client pings every 10 s (go-client's default keepalive); Qdrant accepts that,
		// where grpc-go's default policy would answer too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if opts.APIKey != "" {
				md, _ := metadata.FromIncomingContext(ctx)
				if keys := md.Get("api-key"); len(keys) != 1 || keys[0] != opts.APIKey {
					return nil, status.Error(codes.Unauthenticated, "Invalid api-key")
				}
			}
			return h(ctx, req)
		}))
	qc.RegisterQdrantServer(srv, health{})
	qc.RegisterCollectionsServer(srv, &collectionsService{st: st})
	qc.RegisterPointsServer(srv, &pointsService{st: st})
	go func() { _ = srv.Serve(lis) }()
	s := &Server{Addr: lis.Addr().String(), grpc: srv, st: st}
	tb.Cleanup(srv.Stop)
	return s
}

// FieldIndexes returns the payload fields indexed in a collection, sorted.
func (s *Server) FieldIndexes(collection string) []string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c := s.st.collections[collection]
	if c == nil {
		return nil
	}
	var out []string
	for k := range c.indexes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Collections returns the collections' names, sorted.
func (s *Server) Collections() []string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var out []string
	for k := range s.st.collections {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type state struct {
	mu          sync.RWMutex
	collections map[string]*collection
}

type collection struct {
	dim     int
	points  map[string]*point
	indexes map[string]qc.FieldType
	// keyword holds, for each keyword-indexed field, its values' points: a filter that
	// must match one value scans that value's points only, as Qdrant's payload index does.
	keyword map[string]map[string]map[string]*point // field → value → point key → point
}

func newCollection(dim int) *collection {
	return &collection{dim: dim, points: map[string]*point{}, indexes: map[string]qc.FieldType{},
		keyword: map[string]map[string]map[string]*point{}}
}

// put stores p, replacing the point of the same key.
func (c *collection) put(p *point) {
	c.remove(p.key)
	c.points[p.key] = p
	for field, values := range c.keyword {
		c.indexPoint(field, values, p)
	}
}

func (c *collection) indexPoint(field string, values map[string]map[string]*point, p *point) {
	if v, ok := lookup(p.payload, field).GetKind().(*qc.Value_StringValue); ok {
		if values[v.StringValue] == nil {
			values[v.StringValue] = map[string]*point{}
		}
		values[v.StringValue][p.key] = p
	}
}

func (c *collection) remove(key string) {
	p := c.points[key]
	if p == nil {
		return
	}
	delete(c.points, key)
	for field, values := range c.keyword {
		if v, ok := lookup(p.payload, field).GetKind().(*qc.Value_StringValue); ok {
			delete(values[v.StringValue], key)
		}
	}
}

// candidates returns the points a filter may match: one keyword index's partition when
// the filter must match an indexed keyword, else every point; and the condition that the
// partition satisfies already (nil for every point), for matchFilter to skip.
func (c *collection) candidates(f *qc.Filter) (map[string]*point, *qc.Condition) {
	for _, cond := range f.GetMust() {
		fc := cond.GetField()
		kw, ok := fc.GetMatch().GetMatchValue().(*qc.Match_Keyword)
		if values := c.keyword[fc.GetKey()]; ok && values != nil {
			return values[kw.Keyword], cond
		}
	}
	return c.points, nil
}

type point struct {
	id      *qc.PointId
	key     string // sort and map key: the uuid, or the number zero-padded
	payload map[string]*qc.Value
	vec     []float32 // normalized
}

func (st *state) get(name string) (*collection, error) {
	c := st.collections[name]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
	}
	return c, nil
}

type health struct{ qc.UnimplementedQdrantServer }

func (health) HealthCheck(context.Context, *qc.HealthCheckRequest) (*qc.HealthCheckReply, error) {
	return &qc.HealthCheckReply{Title: "qdrant stand-in (hxp tests)", Version: Version}, nil
}

type collectionsService struct {
	qc.UnimplementedCollectionsServer
	st *state
}

func (s *collectionsService) CollectionExists(_ context.Context, r *qc.CollectionExistsRequest) (*qc.CollectionExistsResponse, error) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	_, ok := s.st.collections[r.GetCollectionName()]
	return &qc.CollectionExistsResponse{Result: &qc.CollectionExists{Exists: ok}}, nil
}

func (s *collectionsService) List(context.Context, *qc.ListCollectionsRequest) (*qc.ListCollectionsResponse, error) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	resp := &qc.ListCollectionsResponse{}
	for name := range s.st.collections {
		resp.Collections = append(resp.Collections, &qc.CollectionDescription{Name: name})
	}
	return resp, nil
}

func (s *collectionsService) Create(_ context.Context, r *qc.CreateCollection) (*qc.CollectionOperationResponse, error) {
	params := r.GetVectorsConfig().GetParams()
	switch {
	case r.GetCollectionName() == "":
		return nil, status.Error(codes.InvalidArgument, "Wrong input: collection name is empty")
	case params == nil || params.GetSize() == 0:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: the stand-in serves one unnamed dense vector per point")
	case params.GetDistance() != qc.Distance_Cosine:
		return nil, status.Errorf(codes.Unimplemented, "the stand-in implements cosine distance only, not %v", params.GetDistance())
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if _, ok := s.st.collections[r.GetCollectionName()]; ok {
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Collection `%s` already exists!", r.GetCollectionName())
	}
	s.st.collections[r.GetCollectionName()] = newCollection(int(params.GetSize()))
	return &qc.CollectionOperationResponse{Result: true}, nil
}

func (s *collectionsService) Delete(_ context.Context, r *qc.DeleteCollection) (*qc.CollectionOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	_, ok := s.st.collections[r.GetCollectionName()]
	delete(s.st.collections, r.GetCollectionName())
	return &qc.CollectionOperationResponse{Result: ok}, nil
}

type pointsService struct {
	qc.UnimplementedPointsServer
	st *state
}

func completed() *qc.PointsOperationResponse {
	return &qc.PointsOperationResponse{Result: &qc.UpdateResult{Status: qc.UpdateStatus_Completed}}
}

func (s *pointsService) CreateFieldIndex(_ context.Context, r *qc.CreateFieldIndexCollection) (*qc.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if r.GetFieldName() == "" {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: field name is empty")
	}
	c.indexes[r.GetFieldName()] = r.GetFieldType()
	if r.GetFieldType() == qc.FieldType_FieldTypeKeyword && c.keyword[r.GetFieldName()] == nil {
		values := map[string]map[string]*point{}
		for _, p := range c.points {
			c.indexPoint(r.GetFieldName(), values, p)
		}
		c.keyword[r.GetFieldName()] = values
	}
	return completed(), nil
}

// pointKey validates an id and returns its canonical form.
func pointKey(id *qc.PointId) (string, error) {
	switch v := id.GetPointIdOptions().(type) {
	case *qc.PointId_Num:
		return fmt.Sprintf("%020d", v.Num), nil
	case *qc.PointId_Uuid:
		u := strings.ToLower(v.Uuid)
		if len(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-' {
			return "", status.Errorf(codes.InvalidArgument, "Unable to parse UUID: %s", v.Uuid)
		}
		return u, nil
	}
	return "", status.Error(codes.InvalidArgument, "Wrong input: point id is missing")
}

func (s *pointsService) Upsert(_ context.Context, r *qc.UpsertPoints) (*qc.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	// Validate every point before storing any: Qdrant refuses a bad request whole.
	pts := make([]*point, len(r.GetPoints()))
	for i, p := range r.GetPoints() {
		key, err := pointKey(p.GetId())
		if err != nil {
			return nil, err
		}
		v := p.GetVectors().GetVector()
		data := v.GetDense().GetData()
		if data == nil {
			data = v.GetData()
		}
		if len(data) != c.dim {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.dim, len(data))
		}
		vec := append([]float32(nil), data...)
		vector.Normalize(vec)
		id := p.GetId()
		if u, ok := id.GetPointIdOptions().(*qc.PointId_Uuid); ok {
			id = qc.NewIDUUID(strings.ToLower(u.Uuid))
		}
		pts[i] = &point{id: id, key: key, payload: p.GetPayload(), vec: vec}
	}
	for _, p := range pts {
		c.put(p)
	}
	return completed(), nil
}

func (s *pointsService) Delete(_ context.Context, r *qc.DeletePoints) (*qc.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	switch sel := r.GetPoints().GetPointsSelectorOneOf().(type) {
	case *qc.PointsSelector_Filter:
		cands, done := c.candidates(sel.Filter)
		for k, p := range cands {
			if matchFilter(sel.Filter, p, done) {
				c.remove(k)
			}
		}
	case *qc.PointsSelector_Points:
		for _, id := range sel.Points.GetIds() {
			if key, err := pointKey(id); err == nil {
				c.remove(key)
			}
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: no points selector")
	}
	return completed(), nil
}

func (s *pointsService) Count(_ context.Context, r *qc.CountPoints) (*qc.CountResponse, error) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	n := 0
	cands, done := c.candidates(r.GetFilter())
	for _, p := range cands {
		if matchFilter(r.GetFilter(), p, done) {
			n++
		}
	}
	return &qc.CountResponse{Result: &qc.CountResult{Count: uint64(n)}}, nil
}

func (s *pointsService) Scroll(_ context.Context, r *qc.ScrollPoints) (*qc.ScrollResponse, error) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	limit := 10
	if r.Limit != nil {
		limit = int(r.GetLimit())
	}
	from := ""
	if r.Offset != nil {
		if from, err = pointKey(r.GetOffset()); err != nil {
			return nil, err
		}
	}
	var keys []string
	cands, done := c.candidates(r.GetFilter())
	for k, p := range cands {
		if k >= from && matchFilter(r.GetFilter(), p, done) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &qc.ScrollResponse{}
	for i, k := range keys {
		if i == limit {
			resp.NextPageOffset = c.points[k].id
			break
		}
		p := c.points[k]
		rp := &qc.RetrievedPoint{Id: p.id}
		if r.GetWithPayload().GetEnable() {
			rp.Payload = p.payload
		}
		if r.GetWithVectors().GetEnable() {
			rp.Vectors = vectorsOutput(p.vec)
		}
		resp.Result = append(resp.Result, rp)
	}
	return resp, nil
}

func vectorsOutput(v []float32) *qc.VectorsOutput {
	return &qc.VectorsOutput{VectorsOptions: &qc.VectorsOutput_Vector{Vector: &qc.VectorOutput{
		Vector: &qc.VectorOutput_Dense{Dense: &qc.DenseVector{Data: append([]float32(nil), v...)}}}}}
}

func (s *pointsService) Query(ctx context.Context, r *qc.QueryPoints) (*qc.QueryResponse, error) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	c, err := s.st.get(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if len(r.GetPrefetch()) > 0 || r.Using != nil || r.Offset != nil || r.LookupFrom != nil {
		return nil, status.Error(codes.Unimplemented, "the stand-in answers plain nearest-vector queries only")
	}
	q := r.GetQuery().GetNearest().GetDense().GetData()
	if len(q) == 0 {
		return nil, status.Error(codes.Unimplemented, "the stand-in answers nearest dense vector queries only")
	}
	if len(q) != c.dim {
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.dim, len(q))
	}
	qv := append([]float32(nil), q...)
	vector.Normalize(qv)
	limit := 10
	if r.Limit != nil {
		limit = int(r.GetLimit())
	}
	if limit == 0 {
		return &qc.QueryResponse{}, nil
	}
	cands, done := c.candidates(r.GetFilter())
	pts := make([]*point, 0, len(cands))
	h := exact.NewTopK(limit)
	for _, p := range cands {
		if !matchFilter(r.GetFilter(), p, done) {
			continue
		}
		score := exact.Dot(qv, p.vec)
		if r.ScoreThreshold != nil && score < r.GetScoreThreshold() {
			continue
		}
		h.Offer(len(pts), score)
		pts = append(pts, p)
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	resp := &qc.QueryResponse{}
	for _, it := range h.Sorted() {
		p := pts[it.Ref]
		sp := &qc.ScoredPoint{Id: p.id, Score: it.Score}
		if r.GetWithPayload().GetEnable() {
			sp.Payload = p.payload
		}
		if r.GetWithVectors().GetEnable() {
			sp.Vectors = vectorsOutput(p.vec)
		}
		resp.Result = append(resp.Result, sp)
	}
	return resp, nil
}

// matchFilter applies Qdrant's filter semantics; a nil filter matches every point. The
// must condition done is known to hold (the point came from its index partition).
func matchFilter(f *qc.Filter, p *point, done *qc.Condition) bool {
	if f == nil {
		return true
	}
	for _, c := range f.GetMust() {
		if c != done && !matchCondition(c, p) {
			return false
		}
	}
	for _, c := range f.GetMustNot() {
		if matchCondition(c, p) {
			return false
		}
	}
	if len(f.GetShould()) == 0 {
		return true
	}
	for _, c := range f.GetShould() {
		if matchCondition(c, p) {
			return true
		}
	}
	return false
}

func matchCondition(c *qc.Condition, p *point) bool {
	switch v := c.GetConditionOneOf().(type) {
	case *qc.Condition_Filter:
		return matchFilter(v.Filter, p, nil)
	case *qc.Condition_HasId:
		for _, id := range v.HasId.GetHasId() {
			if k, err := pointKey(id); err == nil && k == p.key {
				return true
			}
		}
		return false
	case *qc.Condition_Field:
		return matchField(v.Field, lookup(p.payload, v.Field.GetKey()))
	}
	return false // a condition the stand-in does not implement matches nothing
}

// lookup follows a dotted key through nested objects; nil when absent.
func lookup(payload map[string]*qc.Value, key string) *qc.Value {
	first, rest, nested := strings.Cut(key, ".")
	v := payload[first]
	for nested && v != nil {
		var part string
		part, rest, nested = strings.Cut(rest, ".")
		v = v.GetStructValue().GetFields()[part]
	}
	return v
}

func matchField(fc *qc.FieldCondition, v *qc.Value) bool {
	if v == nil {
		return false
	}
	if m := fc.GetMatch(); m != nil {
		return matchValue(m, v)
	}
	if r := fc.GetRange(); r != nil {
		var n float64
		switch k := v.GetKind().(type) {
		case *qc.Value_DoubleValue:
			n = k.DoubleValue
		case *qc.Value_IntegerValue:
			n = float64(k.IntegerValue)
		default:
			return false
		}
		return (r.Gt == nil || n > r.GetGt()) && (r.Gte == nil || n >= r.GetGte()) &&
			(r.Lt == nil || n < r.GetLt()) && (r.Lte == nil || n <= r.GetLte())
	}
	return false
}

func matchValue(m *qc.Match, v *qc.Value) bool {
	str, isStr := v.GetKind().(*qc.Value_StringValue)
	integer, isInt := v.GetKind().(*qc.Value_IntegerValue)
	switch mv := m.GetMatchValue().(type) {
	case *qc.Match_Keyword:
		return isStr && str.StringValue == mv.Keyword
	case *qc.Match_Boolean:
		b, ok := v.GetKind().(*qc.Value_BoolValue)
		return ok && b.BoolValue == mv.Boolean
	case *qc.Match_Integer:
		return isInt && integer.IntegerValue == mv.Integer
	case *qc.Match_Keywords:
		return isStr && contains(mv.Keywords.GetStrings(), str.StringValue)
	case *qc.Match_Integers:
		return isInt && contains(mv.Integers.GetIntegers(), integer.IntegerValue)
	case *qc.Match_ExceptKeywords:
		return isStr && !contains(mv.ExceptKeywords.GetStrings(), str.StringValue)
	case *qc.Match_ExceptIntegers:
		return isInt && !contains(mv.ExceptIntegers.GetIntegers(), integer.IntegerValue)
	}
	return false
}

func contains[T comparable](list []T, x T) bool {
	for _, e := range list {
		if e == x {
			return true
		}
	}
	return false
}
