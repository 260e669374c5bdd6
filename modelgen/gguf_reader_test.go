package modelgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// ggufFile is what readGGUF decodes: metadata, tensor infos and the data offset. It is
// an independent reading of the GGUF v3 layout (written from the format description,
// not from the writer), used to check files in tests.
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
	r := &countingReader{r: bufio.NewReader(f)}
	g := &ggufFile{kv: map[string]any{}, size: st.Size()}
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != "GGUF" {
		return nil, fmt.Errorf("bad magic %q (%v)", magic, err)
	}
	g.version = r.u32()
	nt, nkv := r.u64(), r.u64()
	for i := uint64(0); i < nkv && r.err == nil; i++ {
		k := r.str()
		g.kv[k] = r.value(r.u32())
		g.keys = append(g.keys, k)
	}
	for i := uint64(0); i < nt && r.err == nil; i++ {
		t := ggufTensor{name: r.str()}
		nd := r.u32()
		for j := uint32(0); j < nd; j++ {
			t.shape = append(t.shape, r.u64())
		}
		t.typ = r.u32()
		t.offset = r.u64()
		g.tensors = append(g.tensors, t)
	}
	if r.err != nil {
		return nil, r.err
	}
	align := int64(32)
	if a, ok := g.kv["general.alignment"].(uint32); ok {
		align = int64(a)
	}
	g.dataStart = (r.n + align - 1) / align * align
	return g, nil
}

type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) bytes(n uint64) []byte {
	if c.err != nil || n > 1<<24 {
		if c.err == nil {
			c.err = fmt.Errorf("implausible length %d", n)
		}
		return nil
	}
	b := make([]byte, n)
	_, c.err = io.ReadFull(c, b)
	return b
}

func (c *countingReader) u32() uint32 {
	if b := c.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (c *countingReader) u64() uint64 {
	if b := c.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (c *countingReader) str() string { return string(c.bytes(c.u64())) }

// value reads one value of GGUF type t; arrays become []any.
func (c *countingReader) value(t uint32) any {
	switch t {
	case 0:
		return c.bytes(1)[0]
	case 4:
		return c.u32()
	case 5:
		return int32(c.u32())
	case 6:
		return math.Float32frombits(c.u32())
	case 7:
		return c.bytes(1)[0] != 0
	case 8:
		return c.str()
	case 9:
		et, n := c.u32(), c.u64()
		out := make([]any, 0, min(n, 1<<20))
		for i := uint64(0); i < n && c.err == nil; i++ {
			out = append(out, c.value(et))
		}
		return out
	case 10:
		return c.u64()
	default:
		c.err = fmt.Errorf("unexpected gguf value type %d", t)
		return nil
	}
}
