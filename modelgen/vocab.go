package modelgen

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// TokenType is a llama.cpp token type (tokenizer.ggml.token_type).
type TokenType int32

// Token types as llama.cpp's llama_token_type numbers them.
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

// Fixed token ids of every generated vocabulary.
const (
	UnkID     = 0 // <unk>
	BOSID     = 1 // <s>
	EOSID     = 2 // </s>
	IMStartID = 3 // <|im_start|>
	IMEndID   = 4 // <|im_end|>, end of turn (llama.cpp also treats it as end of generation)
	// FirstByteID is the id of <0x00>; byte b has id FirstByteID+b.
	FirstByteID = 5
)

// spaceMark is SentencePiece's visible space (U+2581), which llama.cpp substitutes for
// ' ' before tokenizing with an SPM vocabulary.
const spaceMark = "\u2581"

// ChatTemplate is the ChatML Jinja template written to tokenizer.chat_template.
// llama.cpp recognises it as its built-in "chatml" template (it contains <|im_start|>).
const ChatTemplate = "{% for message in messages %}" +
	"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Vocab is a SentencePiece-style ("llama") vocabulary with byte fallback: any UTF-8
// text tokenizes, into word pieces where the vocabulary has them and into byte
// tokens otherwise. Tokens[i], Scores[i] and Types[i] describe token id i.
type Vocab struct {
	Tokens []string
	Scores []float32
	Types  []TokenType
}

// Len is the number of tokens.
func (v *Vocab) Len() int { return len(v.Tokens) }

// commonWords are pieces that ordinary English text splits into; each becomes
// "▁word" (a word after a space) together with all its prefixes, so that llama.cpp's
// SPM merges (which only merge pairs whose concatenation is a token) can reach it.
const commonWords = `the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so these her
long make thing see him two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very through
just form sentence great think say help low line differ turn cause much mean before move right boy old
too same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye never last
let thought city tree cross farm hard start might story saw far sea draw left late run while press close
night real life few north open seem together next white children begin got walk example ease paper group
always music those both mark often letter until mile river car feet care second book carry took science
eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood main
enough plain girl usual young ready above ever red list though feel talk bird soon body dog family direct
pose leave song measure door product black short numeral class wind question happen complete ship area
half rock order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen six
table travel less morning ten simple several vowel toward war lay against pattern slow center love person
money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall
lead cry dark machine note wait plan figure star box noun field rest correct able pound done beauty drive
stood contain front teach week final gave green oh quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force blue object decide
surface deep moon island foot system busy test record boat common gold possible plane stead dry wonder laugh
thousand ago ran check game shape equate miss brought heat snow tire bring yes distant fill east paint
language among hello model server token request response data user assistant system message please thank
The I It This In We You What How Hello Yes No`

// commonSuffixes are word-internal pieces (no leading ▁), with all their prefixes.
const commonSuffixes = `s es ed ing er est ly tion sion ment ness ful less able ible al ial ous ive ize ise
ity ty en ent ant ance ence ship hood dom ism ist ure age ery ory ary ic ical ward wise un re in dis pre`

// minVocab is the number of tokens every generated vocabulary starts with: five
// control/unknown tokens, 256 byte tokens, ▁ and the 94 printable ASCII characters.
const minVocab = FirstByteID + 256 + 1 + ('~' - '!' + 1)

// BuildVocab returns the deterministic vocabulary of n tokens (356 <= n <= MaxVocab()): <unk>, <s>,
// </s>, <|im_start|>, <|im_end|>, the 256 byte tokens <0x00>..<0xFF>, ▁, the printable
// ASCII characters, then common English words and suffixes, then letter pairs and
// triples (with and without ▁) until n tokens exist. A piece's score grows with its
// length, so SPM merging prefers longer pieces.
func BuildVocab(n int) (*Vocab, error) {
	if n < minVocab || n > MaxVocab() {
		return nil, fmt.Errorf("modelgen: vocabulary of %d tokens: want %d..%d", n, minVocab, MaxVocab())
	}
	return buildVocab(n), nil
}

// MaxVocab is the largest vocabulary BuildVocab can produce.
var MaxVocab = sync.OnceValue(func() int { return buildVocab(math.MaxInt).Len() })

// buildVocab builds up to n tokens.
func buildVocab(n int) *Vocab {
	b := vocabBuilder{size: n, seen: make(map[string]bool)}
	b.add("<unk>", TokenUnknown)
	b.add("<s>", TokenControl)
	b.add("</s>", TokenControl)
	b.add("<|im_start|>", TokenControl)
	b.add("<|im_end|>", TokenControl)
	for c := 0; c < 256; c++ {
		b.add(fmt.Sprintf("<0x%02X>", c), TokenByte)
	}
	b.add(spaceMark, TokenNormal)
	for c := '!'; c <= '~'; c++ {
		b.add(string(c), TokenNormal)
	}
	for _, w := range strings.Fields(commonWords) {
		b.addWithPrefixes(spaceMark + w)
	}
	for _, s := range strings.Fields(commonSuffixes) {
		b.addWithPrefixes(s)
	}
	b.fillLetterPieces()
	b.score()
	return &b.v
}

type vocabBuilder struct {
	size int
	seen map[string]bool
	v    Vocab
}

func (b *vocabBuilder) full() bool { return len(b.v.Tokens) >= b.size }

func (b *vocabBuilder) add(piece string, t TokenType) {
	if b.full() || b.seen[piece] {
		return
	}
	b.seen[piece] = true
	b.v.Tokens = append(b.v.Tokens, piece)
	b.v.Types = append(b.v.Types, t)
}

// addWithPrefixes adds every prefix of piece of two or more characters, shortest
// first, then piece itself; single characters are already in the vocabulary.
func (b *vocabBuilder) addWithPrefixes(piece string) {
	for i, r := range piece {
		end := i + utf8.RuneLen(r)
		if utf8.RuneCountInString(piece[:end]) >= 2 {
			b.add(piece[:end], TokenNormal)
		}
	}
}

// fillLetterPieces pads the vocabulary with "▁x", then letter pairs, then letter
// triples, each with and without ▁, lowercase; each pair precedes the triples that
// extend it, so merges stay reachable.
func (b *vocabBuilder) fillLetterPieces() {
	const lower = "abcdefghijklmnopqrstuvwxyz"
	const alnum = lower + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for _, c := range alnum {
		b.add(spaceMark+string(c), TokenNormal)
	}
	for _, x := range lower {
		for _, y := range lower {
			b.add(spaceMark+string(x)+string(y), TokenNormal)
			b.add(string(x)+string(y), TokenNormal)
		}
	}
	for _, x := range lower {
		for _, y := range lower {
			for _, z := range lower {
				b.add(spaceMark+string(x)+string(y)+string(z), TokenNormal)
				b.add(string(x)+string(y)+string(z), TokenNormal)
			}
		}
	}
}

// score gives normal pieces a score of their length in characters minus a fraction
// that grows with the id (earlier, more common pieces win ties); other tokens score 0.
func (b *vocabBuilder) score() {
	n := len(b.v.Tokens)
	b.v.Scores = make([]float32, n)
	for i, piece := range b.v.Tokens {
		if b.v.Types[i] != TokenNormal {
			continue
		}
		b.v.Scores[i] = float32(utf8.RuneCountInString(piece)) - float32(i)/float32(n)
	}
}

// normalIDs returns the ids of normal (text) tokens in id order.
func (v *Vocab) normalIDs() []int32 {
	var ids []int32
	for i, t := range v.Types {
		if t == TokenNormal {
			ids = append(ids, int32(i))
		}
	}
	return ids
}
