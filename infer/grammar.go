package infer

// JSONGrammar is a GBNF grammar (llama.cpp's grammar format, root rule "root") for one
// JSON object, used for response_format {"type":"json_object"}. Whitespace between
// tokens is bounded so that a model cannot fill its budget with blanks, and nothing
// may follow the closing brace, so generation ends right after the object.
const JSONGrammar = `root    ::= object
value   ::= object | array | string | number | "true" | "false" | "null"
object  ::= "{" ws ( member ( "," ws member )* )? "}"
member  ::= string ws ":" ws value ws
array   ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string  ::= "\"" char* "\""
char    ::= [^"\\\x00-\x1f] | "\\" escape
escape  ::= ["\\/bfnrt] | "u" hex hex hex hex
hex     ::= [0-9a-fA-F]
number  ::= "-"? int frac? exp?
int     ::= "0" | [1-9] [0-9]*
frac    ::= "." [0-9]+
exp     ::= [eE] [-+]? [0-9]+
ws      ::= ( " " | "\n" | "\t" )? ( " " | "\n" | "\t" )?
`
