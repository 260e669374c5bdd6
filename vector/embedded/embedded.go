// Package embedded is the default vector.Index: one bbolt file under the data directory,
// no service to run. Every Upsert or delete is one bbolt transaction, so it is atomic and
// durable when it returns (fsync), and a process killed at any moment leaves the file as it
// was before or after each call, never half written.
//
// Search is exact: the vectors of every store are held in memory, normalized once when
// stored (as Qdrant does for cosine), and a query is a brute-force dot product over the
// store's vectors (split across the CPUs for large stores), with filters evaluated in Go.
// This suits the stores of a single node: a search costs about 0.4 ms of CPU per 1,000
// points of dimension 384, so about 40 ms for a 100,000-point store (bench/README.md,
// "Vector index"), and memory is dimension × 4 bytes per point plus its text and
// attributes. Options.MaxPoints bounds the whole index (default 500,000: about 770 MB of
// vectors of dimension 384 and 200 ms of CPU per search of one store that holds them
// all); beyond it Upsert fails with vector.ErrFull, and a larger corpus belongs on Qdrant.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/internal/exact"
)

// DefaultMaxPoints is the size bound when Options.MaxPoints is zero.
const DefaultMaxPoints = 500_000

// FileName is the index's file inside its directory.
const FileName = "vectors.db"

// parallelAbove is the store size from which a search is split across the CPUs.
const parallelAbove = 16384

var (
	bucketPoints = []byte("points")
	bucketMeta   = []byte("meta")
	keyFormat    = []byte("format")
	formatV1     = []byte("hxp-vectors-1")
)

// ErrClosed is returned by calls on a closed index.
var ErrClosed = errors.New("embedded vector index closed")

// Options configure an embedded index.
type Options struct {
	// MaxPoints is the most points the index holds (all stores together); 0 means
	// DefaultMaxPoints.
	MaxPoints int
	// LockTimeout is how long Open waits for another process to release the file; 0
	// means one second.
	LockTimeout time.Duration
}

// Index is an embedded vector.Index. It is safe for concurrent use.
type Index struct {
	db  *bolt.DB
	max int

	wmu sync.Mutex // serializes writers: the bbolt transaction, then the memory update

	mu     sync.RWMutex // guards what follows
	stores map[string]*store
	owner  map[string]string // point id → store id
	total  int
	closed bool
}

var _ vector.Index = (*Index)(nil)

// store is one store's points in memory: the vectors in one contiguous slice.
type store struct {
	dim  int
	ids  []string
	vecs []float32 // len(ids)*dim, normalized
	meta []payload
	pos  map[string]int // id → index
}

// payload is what a point holds besides its id and vector; it is also the stored record's
// JSON part.
type payload struct {
	StoreID    string         `json:"s"`
	FileID     string         `json:"f"`
	Chunk      int            `json:"c"`
	Text       string         `json:"t"`
	Attributes map[string]any `json:"a,omitempty"`
}

// Open opens (creating it if needed) the index under dir and loads its vectors.
func Open(dir string, opts Options) (*Index, error) {
	if opts.MaxPoints < 0 {
		return nil, fmt.Errorf("vector.embedded.max_points: %d is negative (0 means %d)", opts.MaxPoints, DefaultMaxPoints)
	}
	if opts.MaxPoints == 0 {
		opts.MaxPoints = DefaultMaxPoints
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vector index directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open vector index %s: locked by another process (one HXP per data directory)", path)
		}
		return nil, fmt.Errorf("open vector index %s: %w", path, err)
	}
	x := &Index{db: db, max: opts.MaxPoints, stores: map[string]*store{}, owner: map[string]string{}}
	if err := x.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("load vector index %s: %w", path, err)
	}
	return x, nil
}

// load creates the buckets of a new file and reads every point of an existing one.
func (x *Index) load() error {
	if err := x.db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := m.Get(keyFormat); {
		case f == nil:
			if err := m.Put(keyFormat, formatV1); err != nil {
				return err
			}
		case !bytes.Equal(f, formatV1):
			return fmt.Errorf("unknown format %q (this HXP reads %q)", f, formatV1)
		}
		_, err = tx.CreateBucketIfNotExists(bucketPoints)
		return err
	}); err != nil {
		return err
	}
	return x.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPoints).ForEach(func(k, v []byte) error {
			p, vec, err := decode(v)
			if err != nil {
				return fmt.Errorf("point %s: %w", k, err)
			}
			s := x.stores[p.StoreID]
			if s == nil {
				s = &store{dim: len(vec), pos: map[string]int{}}
				x.stores[p.StoreID] = s
			} else if len(vec) != s.dim {
				return fmt.Errorf("point %s: dimension %d in store %s of dimension %d", k, len(vec), p.StoreID, s.dim)
			}
			s.add(string(k), p, vec)
			x.owner[string(k)] = p.StoreID
			x.total++
			return nil
		})
	})
}

// Upsert stores the points in one transaction.
func (x *Index) Upsert(ctx context.Context, points []vector.Point) error {
	if len(points) == 0 {
		return nil
	}
	if _, err := vector.CheckPoints(points); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()

	// Only writers change the memory, and x.wmu excludes the others: read it under RLock.
	if err := x.view(func() error { return x.checkUpsert(points) }); err != nil {
		return err
	}

	vecs := make([][]float32, len(points))
	err := x.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPoints)
		for i := range points {
			p := &points[i]
			vecs[i] = append([]float32(nil), p.Vector...)
			vector.Normalize(vecs[i])
			rec, err := encode(payloadOf(p), vecs[i])
			if err != nil {
				return fmt.Errorf("points[%d]: %w", i, err)
			}
			if err := b.Put([]byte(p.ID), rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vector upsert: %w", err)
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range points {
		p := &points[i]
		x.removeLocked(p.ID)
		s := x.stores[p.StoreID]
		if s == nil {
			s = &store{dim: len(p.Vector), pos: map[string]int{}}
			x.stores[p.StoreID] = s
		}
		s.add(p.ID, payloadOf(p), vecs[i])
		x.owner[p.ID] = p.StoreID
		x.total++
	}
	return nil
}

// checkUpsert refuses points whose dimension is not their store's, and a call that would
// take the index beyond its size. Call with x.mu held.
func (x *Index) checkUpsert(points []vector.Point) error {
	dims := map[string]int{}
	added := map[string]bool{}
	for i := range points {
		p := &points[i]
		want, seen := dims[p.StoreID]
		if !seen {
			want = len(p.Vector)
			if s := x.stores[p.StoreID]; s != nil {
				want = s.dim
			}
			dims[p.StoreID] = want
		}
		if len(p.Vector) != want {
			return vector.DimensionError(fmt.Sprintf("points[%d].vector", i), p.StoreID, len(p.Vector), want)
		}
		if _, exists := x.owner[p.ID]; !exists {
			added[p.ID] = true
		}
	}
	if x.total+len(added) > x.max {
		return fmt.Errorf("%w: %d points stored and %d new would exceed max_points %d (raise vector.embedded.max_points or use Qdrant)",
			vector.ErrFull, x.total, len(added), x.max)
	}
	return nil
}

// Search returns the store's best hits.
func (x *Index) Search(ctx context.Context, q vector.Query) ([]vector.Hit, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	qv := append([]float32(nil), q.Vector...)
	vector.Normalize(qv)

	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return nil, ErrClosed
	}
	s := x.stores[q.StoreID]
	if s == nil || len(s.ids) == 0 {
		return nil, nil
	}
	if len(qv) != s.dim {
		return nil, vector.DimensionError("vector", q.StoreID, len(qv), s.dim)
	}
	best := s.search(ctx, qv, &q)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hits := make([]vector.Hit, len(best))
	for i, it := range best {
		hits[i] = vector.Hit{Point: s.point(it.Ref, false), Score: it.Score}
	}
	return hits, nil
}

// search scans the store, in parallel parts when it is large.
func (s *store) search(ctx context.Context, qv []float32, q *vector.Query) []exact.Item {
	n := len(s.ids)
	parts := 1
	if n >= parallelAbove {
		parts = runtime.GOMAXPROCS(0)
	}
	heaps := make([]*exact.TopK, parts)
	var wg sync.WaitGroup
	for w := range parts {
		heaps[w] = exact.NewTopK(q.Limit)
		lo, hi := n*w/parts, n*(w+1)/parts
		wg.Go(func() { s.scan(ctx, qv, q, lo, hi, heaps[w]) })
	}
	wg.Wait()
	for _, h := range heaps[1:] {
		heaps[0].Merge(h)
	}
	return heaps[0].Sorted()
}

func (s *store) scan(ctx context.Context, qv []float32, q *vector.Query, lo, hi int, h *exact.TopK) {
	d := s.dim
	for i := lo; i < hi; i++ {
		if i&4095 == 0 && ctx.Err() != nil {
			return
		}
		if q.Filter != nil && !q.Filter.Match(s.meta[i].Attributes) {
			continue
		}
		score := exact.Dot(qv, s.vecs[i*d:(i+1)*d])
		if score >= q.ScoreThreshold {
			h.Offer(i, score)
		}
	}
}

// DeleteFile removes the points of one file of a store.
func (x *Index) DeleteFile(ctx context.Context, storeID, fileID string) error {
	return x.delete(ctx, storeID, func(p *payload) bool { return p.FileID == fileID })
}

// DeleteStore removes every point of a store.
func (x *Index) DeleteStore(ctx context.Context, storeID string) error {
	return x.delete(ctx, storeID, func(*payload) bool { return true })
}

func (x *Index) delete(ctx context.Context, storeID string, match func(*payload) bool) error {
	if storeID == "" {
		return fmt.Errorf("%w: store_id: missing", vector.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	var ids []string
	err := x.view(func() error {
		if s := x.stores[storeID]; s != nil {
			for i := range s.ids {
				if match(&s.meta[i]) {
					ids = append(ids, s.ids[i])
				}
			}
		}
		return nil
	})
	if err != nil || len(ids) == 0 {
		return err
	}
	if err := x.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPoints)
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("vector delete: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		x.removeLocked(id)
	}
	return nil
}

// removeLocked forgets a point from memory, if present. Call with x.mu held for writing.
func (x *Index) removeLocked(id string) {
	sid, ok := x.owner[id]
	if !ok {
		return
	}
	s := x.stores[sid]
	s.remove(id)
	if len(s.ids) == 0 {
		delete(x.stores, sid)
	}
	delete(x.owner, id)
	x.total--
}

// Count returns the number of points of a store, or of all stores for "".
func (x *Index) Count(_ context.Context, storeID string) (n int, err error) {
	err = x.view(func() error {
		if storeID == "" {
			n = x.total
		} else if s := x.stores[storeID]; s != nil {
			n = len(s.ids)
		}
		return nil
	})
	return n, err
}

// Scroll calls fn with every point of a store ("" for all). It lists the ids first, then
// copies the points a page at a time, without holding a lock while fn runs (fn may call
// the index): a point deleted meanwhile is skipped, one added meanwhile is not seen.
func (x *Index) Scroll(ctx context.Context, storeID string, fn func(vector.Point) error) error {
	var ids []string
	err := x.view(func() error {
		for sid, s := range x.stores {
			if storeID == "" || sid == storeID {
				ids = append(ids, s.ids...)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	const page = 1024
	pts := make([]vector.Point, 0, page)
	for lo := 0; lo < len(ids); lo += page {
		if err := ctx.Err(); err != nil {
			return err
		}
		pts = pts[:0]
		err := x.view(func() error {
			for _, id := range ids[lo:min(lo+page, len(ids))] {
				if s := x.stores[x.owner[id]]; s != nil {
					if i, ok := s.pos[id]; ok {
						pts = append(pts, s.point(i, true))
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range pts {
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check reports whether the file can be read.
func (x *Index) Check(context.Context) error {
	return x.view(func() error {
		return x.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketPoints) == nil {
				return errors.New("vector index: points bucket missing")
			}
			return nil
		})
	})
}

// view runs fn with the memory read-locked, unless the index is closed.
func (x *Index) view(fn func() error) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		return ErrClosed
	}
	return fn()
}

// Close closes the file; later calls fail with ErrClosed.
func (x *Index) Close() error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	x.stores, x.owner = nil, nil
	return x.db.Close()
}

func (s *store) add(id string, p payload, vec []float32) {
	s.pos[id] = len(s.ids)
	s.ids = append(s.ids, id)
	s.meta = append(s.meta, p)
	s.vecs = append(s.vecs, vec...)
}

// remove deletes a point by moving the last one into its place.
func (s *store) remove(id string) {
	i, ok := s.pos[id]
	if !ok {
		return
	}
	last := len(s.ids) - 1
	if i != last {
		s.ids[i] = s.ids[last]
		s.meta[i] = s.meta[last]
		copy(s.vecs[i*s.dim:(i+1)*s.dim], s.vecs[last*s.dim:])
		s.pos[s.ids[i]] = i
	}
	s.ids = s.ids[:last]
	s.meta[last] = payload{}
	s.meta = s.meta[:last]
	s.vecs = s.vecs[:last*s.dim]
	delete(s.pos, id)
}

// point returns point i, with a copy of its vector when withVector.
func (s *store) point(i int, withVector bool) vector.Point {
	m := &s.meta[i]
	p := vector.Point{ID: s.ids[i], StoreID: m.StoreID, FileID: m.FileID, Chunk: m.Chunk, Text: m.Text, Attributes: m.Attributes}
	if withVector {
		p.Vector = append([]float32(nil), s.vecs[i*s.dim:(i+1)*s.dim]...)
	}
	return p
}

// payloadOf copies a point's payload, with its attributes' numbers as float64 (what they
// read back as).
func payloadOf(p *vector.Point) payload {
	var attrs map[string]any
	if len(p.Attributes) > 0 {
		attrs = make(map[string]any, len(p.Attributes))
		for k, v := range p.Attributes {
			if n, ok := vector.Number(v); ok {
				v = n
			}
			attrs[k] = v
		}
	}
	return payload{StoreID: p.StoreID, FileID: p.FileID, Chunk: p.Chunk, Text: p.Text, Attributes: attrs}
}

// A record is the payload's JSON length (uint32, little endian), the JSON, then the vector
// as little-endian float32s.
func encode(p payload, vec []float32) ([]byte, error) {
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	rec := make([]byte, 4, 4+len(js)+4*len(vec))
	binary.LittleEndian.PutUint32(rec, uint32(len(js)))
	rec = append(rec, js...)
	for _, f := range vec {
		rec = binary.LittleEndian.AppendUint32(rec, math.Float32bits(f))
	}
	return rec, nil
}

func decode(rec []byte) (payload, []float32, error) {
	var p payload
	if len(rec) < 4 {
		return p, nil, errors.New("record too short")
	}
	n := int(binary.LittleEndian.Uint32(rec))
	if n > len(rec)-4 || (len(rec)-4-n)%4 != 0 || len(rec)-4-n == 0 {
		return p, nil, errors.New("record length does not match")
	}
	if err := json.Unmarshal(rec[4:4+n], &p); err != nil {
		return p, nil, err
	}
	raw := rec[4+n:]
	vec := make([]float32, len(raw)/4)
	for i := range vec {
		vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return p, vec, nil
}
