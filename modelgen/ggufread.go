package modelgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// A GGUF v3 reader, written from the format description rather than from the writer
// in gguf.go: the tests use it to check what the writer produced, and ReadTokenizer
// uses it to take the tokenizer of another GGUF file. Files are untrusted input, so
// every length is bounded before anything is allocated for it.

// Bounds on what readGGUF accepts.
const (
	maxGGUFString = 16 << 20 // bytes of one string (a chat template, a token)
	maxGGUFArray  = 1 << 24  // elements of one array (a vocabulary's merges)
	maxGGUFCount  = 1 << 20  // metadata pairs, tensors, dimensions
)

// ggufFile is what readGGUF decodes: metadata, tensor infos and the data offset.
// Scalar values are uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32,
// float64, bool or string; arrays are []string, []int32, []uint32, []float32 or
// []bool.
type ggufFile struct {
	version   uint32
	kv        map[string]any
	keys      []string // in file order
	tensors   []ggufTensor
	dataStart int64
	size      int64
}

type ggufTensor struct {
	name   string
	shape  []uint64
	typ    uint32
	offset uint64
}

func readGGUF(path string) (*ggufFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := &countingReader{r: bufio.NewReaderSize(f, 1<<20)}
	g := &ggufFile{kv: map[string]any{}, size: st.Size()}
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != ggufMagic {
		return nil, fmt.Errorf("%s: not a GGUF file (bad magic %q)", path, magic[:])
	}
	g.version = r.u32()
	if r.err == nil && g.version != ggufVersion {
		return nil, fmt.Errorf("%s: GGUF version %d, want %d", path, g.version, ggufVersion)
	}
	nt, nkv := r.count(), r.count()
	for i := uint64(0); i < nkv && r.err == nil; i++ {
		k := r.str()
		if _, dup := g.kv[k]; dup && r.err == nil {
			r.err = fmt.Errorf("duplicate key %q", k)
		}
		g.kv[k] = r.value(k, r.u32())
		g.keys = append(g.keys, k)
	}
	for i := uint64(0); i < nt && r.err == nil; i++ {
		t := ggufTensor{name: r.str()}
		nd := r.u32()
		if nd > 8 {
			r.fail(fmt.Errorf("tensor %q has %d dimensions", t.name, nd))
		}
		for j := uint32(0); j < nd && r.err == nil; j++ {
			t.shape = append(t.shape, r.u64())
		}
		t.typ = r.u32()
		t.offset = r.u64()
		g.tensors = append(g.tensors, t)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: GGUF header at byte %d: %w", path, r.n, r.err)
	}
	align := int64(ggufAlignment)
	if a, ok := g.kv["general.alignment"].(uint32); ok && a > 0 {
		align = int64(a)
	}
	g.dataStart = (r.n + align - 1) / align * align
	return g, nil
}

// countingReader reads little-endian GGUF primitives, counting bytes; after the
// first error every read returns zero values and err keeps that error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
	buf [8]byte
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// fixed reads n <= 8 bytes into the scratch buffer.
func (c *countingReader) fixed(n int) []byte {
	if c.err != nil {
		return c.buf[:n:n]
	}
	if _, err := io.ReadFull(c, c.buf[:n]); err != nil {
		c.fail(fmt.Errorf("truncated: %w", err))
		clear(c.buf[:])
	}
	return c.buf[:n:n]
}

func (c *countingReader) u8() uint8   { return c.fixed(1)[0] }
func (c *countingReader) u16() uint16 { return binary.LittleEndian.Uint16(c.fixed(2)) }
func (c *countingReader) u32() uint32 { return binary.LittleEndian.Uint32(c.fixed(4)) }
func (c *countingReader) u64() uint64 { return binary.LittleEndian.Uint64(c.fixed(8)) }

// count reads a tensor or key count and checks it against maxGGUFCount.
func (c *countingReader) count() uint64 {
	n := c.u64()
	if n > maxGGUFCount {
		c.fail(fmt.Errorf("implausible count %d", n))
		return 0
	}
	return n
}

func (c *countingReader) str() string {
	n := c.u64()
	if c.err != nil {
		return ""
	}
	if n > maxGGUFString {
		c.fail(fmt.Errorf("string of %d bytes exceeds %d", n, maxGGUFString))
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		c.fail(fmt.Errorf("truncated string: %w", err))
		return ""
	}
	return string(b)
}

// GGUF value types beyond those the writer uses (gguf.go).
const (
	ggufUint8   uint32 = 0
	ggufInt8    uint32 = 1
	ggufUint16  uint32 = 2
	ggufInt16   uint32 = 3
	ggufInt64   uint32 = 11
	ggufFloat64 uint32 = 12
)

// value reads one value of GGUF type t for key.
func (c *countingReader) value(key string, t uint32) any {
	switch t {
	case ggufUint8:
		return c.u8()
	case ggufInt8:
		return int8(c.u8())
	case ggufUint16:
		return c.u16()
	case ggufInt16:
		return int16(c.u16())
	case ggufUint32:
		return c.u32()
	case ggufInt32:
		return int32(c.u32())
	case ggufFloat32:
		return math.Float32frombits(c.u32())
	case ggufBool:
		return c.u8() != 0
	case ggufString:
		return c.str()
	case ggufUint64:
		return c.u64()
	case ggufInt64:
		return int64(c.u64())
	case ggufFloat64:
		return math.Float64frombits(c.u64())
	case ggufArray:
		return c.array(key)
	}
	c.fail(fmt.Errorf("key %q: unknown GGUF value type %d", key, t))
	return nil
}

// array reads an array value; the element types of vocabularies are supported.
func (c *countingReader) array(key string) any {
	et, n := c.u32(), c.u64()
	if c.err != nil {
		return nil
	}
	if n > maxGGUFArray {
		c.fail(fmt.Errorf("key %q: array of %d elements exceeds %d", key, n, maxGGUFArray))
		return nil
	}
	switch et {
	case ggufString:
		return readArray(c, n, c.str)
	case ggufInt32:
		return readArray(c, n, func() int32 { return int32(c.u32()) })
	case ggufUint32:
		return readArray(c, n, c.u32)
	case ggufFloat32:
		return readArray(c, n, func() float32 { return math.Float32frombits(c.u32()) })
	case ggufBool:
		return readArray(c, n, func() bool { return c.u8() != 0 })
	}
	c.fail(fmt.Errorf("key %q: arrays of GGUF type %d are not supported", key, et))
	return nil
}

func readArray[T any](c *countingReader, n uint64, next func() T) []T {
	out := make([]T, 0, min(n, 1<<20))
	for i := uint64(0); i < n && c.err == nil; i++ {
		out = append(out, next())
	}
	return out
}
