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
