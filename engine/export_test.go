package engine

// SetGrammarFirst makes s filter every candidate through its grammar before the
// chain picks, the slow reference way that Sample's check-first path replaces.
func SetGrammarFirst(s *Sampler, on bool) { s.grammarFirst = on }

// Redrawn returns how many of s's picks its grammar rejected and Sample drew again
// from the grammar's candidates.
func Redrawn(s *Sampler) int { return int(s.redrawn) }

// TiledAttentionOps is how many flash-attention ops the tiled kernel has computed.
func TiledAttentionOps() int64 { return tiledAttentionOps() }

// PoolThreads is the size of c's decode thread pool.
func PoolThreads(c *Context) int { return c.poolThreads }

// Int8MatmulOps is how many matrix products the int8 kernel has computed.
func Int8MatmulOps() int64 { return int8MatmulOps() }

// MulMatQ8 computes one Q8_0 matrix product in a ggml graph (see mulMatQ8).
func MulMatQ8(w, x []float32, m, k, n, threads int) ([]float32, error) {
	return mulMatQ8(w, x, m, k, n, threads)
}
