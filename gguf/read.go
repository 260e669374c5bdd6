package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Bounds that keep a corrupt or hostile header from making the reader allocate without
// bound. Every length is also checked against the bytes left in the file.
const (
	// MaxString is the longest string value or key, in bytes (a chat template or a
	// merges entry is far smaller).
	MaxString = 64 << 20
	// MaxKeptArray is the default bound of Options.MaxArray when arrays are kept (a
	// vocabulary's merges have a few hundred thousand entries).
	MaxKeptArray = 1 << 24
	// MaxCountedKeep is the default bound of Options.MaxArray when large arrays are
	// counted: per-layer hyper-parameters are kept, token tables are counted.
	MaxCountedKeep = 1 << 16
	// MaxTensors and MaxKVs bound the tensor table and the metadata.
	MaxTensors = 1 << 20
	MaxKVs     = 1 << 20
	// MaxDims bounds a tensor's dimensions.
	MaxDims = 8
	// DefaultAlignment is the alignment when general.alignment is not set.
	DefaultAlignment = 32
	// MaxAlignment bounds general.alignment.
	MaxAlignment = 1 << 20
)

const (
	magic        = "GGUF"
	minVersion   = 2
	maxVersion   = 3
	keyAlignment = "general.alignment"
)

// Options say which arrays Read keeps. The zero value keeps every array of up to
// MaxKeptArray elements and fails on a longer one.
type Options struct {
	// CountArrays selects the counting mode: arrays of fixed-size elements (numbers,
	// bools) of up to MaxArray elements are kept; string arrays and longer arrays are
	// counted (Type, Elem and Len are set, Data is nil) and skipped, so memory stays
	// bounded whatever the strings hold. Without it, every array is kept and one longer
	// than MaxArray is an error.
	CountArrays bool
	// MaxArray bounds the arrays kept, in elements; 0 means MaxKeptArray, or
	// MaxCountedKeep with CountArrays.
	MaxArray uint64
}

func (o Options) maxArray() uint64 {
	switch {
	case o.MaxArray > 0:
		return o.MaxArray
	case o.CountArrays:
		return MaxCountedKeep
	}
	return MaxKeptArray
}

// ReadFile reads the header of the GGUF file at path. Errors name the file.
func ReadFile(path string, opt Options) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	g, err := Read(f, st.Size(), opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Read reads a GGUF header from r, a file of size bytes. It checks that every tensor
// lies within those bytes, so a truncated download or a Git LFS pointer is reported
// here rather than when llama.cpp maps the file.
func Read(r io.Reader, size int64, opt Options) (*File, error) {
	g, err := read(&decoder{r: bufio.NewReaderSize(r, 1<<16), size: size, opt: opt})
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return g, nil
}

func read(d *decoder) (*File, error) {
	var m [4]byte
	if d.read(m[:]); d.err != nil || string(m[:]) != magic {
		return nil, fmt.Errorf("not a GGUF file (magic %q)", m[:])
	}
	g := &File{Version: d.u32(), Size: d.size, Alignment: DefaultAlignment}
	if d.err == nil && (g.Version < minVersion || g.Version > maxVersion) {
		return nil, fmt.Errorf("unsupported GGUF version %d (want %d..%d)", g.Version, minVersion, maxVersion)
	}
	// Every tensor entry takes at least 24 bytes, every metadata entry 13.
	nTensors, nKV := d.count("tensors", MaxTensors, 24), d.count("metadata entries", MaxKVs, 13)
	if d.err != nil {
		return nil, d.errorf("header")
	}
	g.KV = make([]KV, 0, min(nKV, 1<<12))
	g.index = make(map[string]int, min(nKV, 1<<12))
	for i := range nKV {
		key := d.str()
		typ := Type(d.u32())
		if d.err != nil {
			return nil, d.errorf("metadata entry %d", i)
		}
		if _, dup := g.index[key]; dup {
			return nil, fmt.Errorf("metadata key %q appears twice", key)
		}
		v := d.value(typ)
		if d.err != nil {
			return nil, d.errorf("metadata %q", key)
		}
		g.index[key] = len(g.KV)
		g.KV = append(g.KV, KV{key, v})
	}
	if v, ok := g.Get(keyAlignment); ok {
		a, isU32 := v.Data.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 || a > MaxAlignment {
			return nil, fmt.Errorf("%s is %v (%s), want a uint32 power of two up to %d", keyAlignment, v.Data, v.Type, MaxAlignment)
		}
		g.Alignment = uint64(a)
	}
	g.Tensors = make([]TensorInfo, 0, min(nTensors, 1<<12))
	for i := range nTensors {
		t := TensorInfo{Name: d.str()}
		nDims := d.u32()
		if d.err == nil && nDims > MaxDims {
			return nil, fmt.Errorf("tensor %q has %d dimensions (at most %d)", t.Name, nDims, MaxDims)
		}
		if d.err == nil {
			t.Shape = make([]uint64, nDims)
		}
		for j := range t.Shape {
			t.Shape[j] = d.u64()
		}
		t.Type = TensorType(d.u32())
		t.Offset = d.u64()
		if d.err != nil {
			return nil, d.errorf("tensor %d", i)
		}
		n, err := t.Type.Bytes(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		t.Bytes = n
		g.Tensors = append(g.Tensors, t)
	}
	align := int64(g.Alignment)
	g.DataOffset = (d.n + align - 1) / align * align
	for _, t := range g.Tensors {
		data := uint64(max(0, d.size-g.DataOffset))
		if t.Offset > data || t.Bytes > data-t.Offset {
			return nil, fmt.Errorf("tensor %q (%d bytes at data offset %d) ends past the %d bytes of the file (truncated?)",
				t.Name, t.Bytes, t.Offset, d.size)
		}
	}
	return g, nil
}

// decoder reads little-endian GGUF primitives, counting bytes; after the first error
// every read returns zero values and err keeps that error.
type decoder struct {
	r    *bufio.Reader
	n    int64 // bytes consumed
	size int64 // bytes in the file
	opt  Options
	err  error
	buf  [8]byte
}

// errorf wraps d.err with where it happened.
func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%s at byte %d: %w", fmt.Sprintf(format, args...), d.n, d.err)
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) read(p []byte) {
	if d.err != nil {
		clear(p)
		return
	}
	n, err := io.ReadFull(d.r, p)
	d.n += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		d.fail(fmt.Errorf("truncated: %w", err))
		clear(p)
	}
}

// left is the number of bytes after the ones consumed.
func (d *decoder) left() uint64 { return uint64(max(0, d.size-d.n)) }

// fits fails unless n items of at least each bytes fit in what is left of the file.
func (d *decoder) fits(what string, n, each uint64) bool {
	if d.err == nil && n > d.left()/each {
		d.fail(fmt.Errorf("%d %s of at least %d bytes do not fit in the %d bytes left (truncated?)", n, what, each, d.left()))
	}
	return d.err == nil
}

func (d *decoder) skip(n uint64) {
	if !d.fits("bytes", n, 1) {
		return
	}
	m, err := d.r.Discard(int(n))
	d.n += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		d.fail(fmt.Errorf("truncated: %w", err))
	}
}

func (d *decoder) u8() uint8   { d.read(d.buf[:1]); return d.buf[0] }
func (d *decoder) u16() uint16 { d.read(d.buf[:2]); return binary.LittleEndian.Uint16(d.buf[:2]) }
func (d *decoder) u32() uint32 { d.read(d.buf[:4]); return binary.LittleEndian.Uint32(d.buf[:4]) }
func (d *decoder) u64() uint64 { d.read(d.buf[:8]); return binary.LittleEndian.Uint64(d.buf[:8]) }

// count reads a count of items of at least each bytes and checks it against limit.
func (d *decoder) count(what string, limit, each uint64) uint64 {
	n := d.u64()
	if d.err == nil && n > limit {
		d.fail(fmt.Errorf("%d %s (at most %d)", n, what, limit))
	}
	if !d.fits(what, n, each) {
		return 0
	}
	return n
}

// strLen reads a string length and checks it.
func (d *decoder) strLen() uint64 {
	n := d.u64()
	if d.err == nil && n > MaxString {
		d.fail(fmt.Errorf("string of %d bytes (at most %d)", n, MaxString))
	}
	if !d.fits("string bytes", n, 1) {
		return 0
	}
	return n
}

func (d *decoder) str() string {
	n := d.strLen()
	if d.err != nil {
		return ""
	}
	b := make([]byte, n)
	d.read(b)
	return string(b)
}

// value reads one value of type t.
func (d *decoder) value(t Type) Value {
	v := Value{Type: t}
	switch t {
	case Uint8:
		v.Data = d.u8()
	case Int8:
		v.Data = int8(d.u8())
	case Uint16:
		v.Data = d.u16()
	case Int16:
		v.Data = int16(d.u16())
	case Uint32:
		v.Data = d.u32()
	case Int32:
		v.Data = int32(d.u32())
	case Float32:
		v.Data = math.Float32frombits(d.u32())
	case Bool:
		v.Data = d.bool()
	case String:
		v.Data = d.str()
	case Uint64:
		v.Data = d.u64()
	case Int64:
		v.Data = int64(d.u64())
	case Float64:
		v.Data = math.Float64frombits(d.u64())
	case Array:
		return d.array()
	default:
		d.fail(fmt.Errorf("unknown value type %d", uint32(t)))
	}
	return v
}

func (d *decoder) bool() bool { return d.u8() != 0 }

// array reads an array: kept, counted or refused as the options say.
func (d *decoder) array() Value {
	v := Value{Type: Array, Elem: Type(d.u32()), Len: d.u64()}
	if d.err != nil {
		return v
	}
	size := uint64(v.Elem.Size())
	if size == 0 && v.Elem != String {
		d.fail(fmt.Errorf("arrays of %s are not supported", v.Elem))
		return v
	}
	limit, each := d.opt.maxArray(), size
	if v.Elem == String {
		each = 8 // the length of an empty string
	}
	if !d.fits("array elements", v.Len, each) {
		return v
	}
	if d.opt.CountArrays && (v.Elem == String || v.Len > limit) {
		if v.Elem != String {
			d.skip(v.Len * size)
			return v
		}
		for range v.Len {
			if d.skip(d.strLen()); d.err != nil {
				break
			}
		}
		return v
	}
	if v.Len > limit {
		d.fail(fmt.Errorf("array of %d elements (at most %d)", v.Len, limit))
		return v
	}
	switch v.Elem {
	case Uint8:
		v.Data = elems(d, v.Len, d.u8)
	case Int8:
		v.Data = elems(d, v.Len, func() int8 { return int8(d.u8()) })
	case Uint16:
		v.Data = elems(d, v.Len, d.u16)
	case Int16:
		v.Data = elems(d, v.Len, func() int16 { return int16(d.u16()) })
	case Uint32:
		v.Data = elems(d, v.Len, d.u32)
	case Int32:
		v.Data = elems(d, v.Len, func() int32 { return int32(d.u32()) })
	case Float32:
		v.Data = elems(d, v.Len, func() float32 { return math.Float32frombits(d.u32()) })
	case Bool:
		v.Data = elems(d, v.Len, d.bool)
	case String:
		v.Data = elems(d, v.Len, d.str)
	case Uint64:
		v.Data = elems(d, v.Len, d.u64)
	case Int64:
		v.Data = elems(d, v.Len, func() int64 { return int64(d.u64()) })
	case Float64:
		v.Data = elems(d, v.Len, func() float64 { return math.Float64frombits(d.u64()) })
	}
	return v
}

// elems reads n elements; n was checked against the bytes left, so the slice is at
// most a small multiple of the file's size.
func elems[T any](d *decoder, n uint64, next func() T) []T {
	out := make([]T, n)
	for i := range out {
		if out[i] = next(); d.err != nil {
			return nil
		}
	}
	return out
}
