package graphql

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/hxp-ai/hxp/infer"
)

// Subprotocol is the WebSocket subprotocol served: graphql-transport-ws, the protocol
// of the graphql-ws library
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
const Subprotocol = "graphql-transport-ws"

// Message types of graphql-transport-ws.
const (
	msgConnectionInit = "connection_init"
	msgConnectionAck  = "connection_ack"
	msgPing           = "ping"
	msgPong           = "pong"
	msgSubscribe      = "subscribe"
	msgNext           = "next"
	msgError          = "error"
	msgComplete       = "complete"
)

// Close codes of graphql-transport-ws.
const (
	closeBadRequest   = 4400
	closeUnauthorized = 4401
	closeForbidden    = 4403
	closeInitTimeout  = 4408
	closeDuplicateID  = 4409
	closeTooManyInits = 4429
)

// wsMessage is one message of the protocol.
type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// maxMessageBytes bounds one received message (a subscribe with its variables).
const maxMessageBytes = 8 << 20

// upgrade serves GET /graphql: a WebSocket with the graphql-transport-ws subprotocol.
func (s *Server) upgrade(ctx *fasthttp.RequestCtx) {
	if !websocket.FastHTTPIsWebSocketUpgrade(ctx) || !offers(ctx, Subprotocol) {
		writeRefusal(ctx, fasthttp.StatusBadRequest, infer.Invalid("", "GET %s is a WebSocket with the %s subprotocol; send queries and mutations as POST application/json", Path, Subprotocol))
		return
	}
	// Auth comes with connection_init (browsers cannot set headers on a WebSocket);
	// an Authorization header of the upgrade request is used when the payload has none.
	header := authorization(&ctx.Request.Header)
	base := baseContext(ctx, nil, false) // the access record ends with the upgrade
	up := websocket.FastHTTPUpgrader{Subprotocols: []string{Subprotocol}}
	if err := up.Upgrade(ctx, func(c *websocket.Conn) { s.serveSocket(base, c, header) }); err != nil {
		s.opts.Log.Debug().Err(err).Msg("graphql: websocket upgrade refused")
	}
}

// offers reports whether the upgrade request lists subprotocol.
func offers(ctx *fasthttp.RequestCtx, subprotocol string) bool {
	for _, v := range ctx.Request.Header.PeekAll("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(string(v), ",") {
			if strings.TrimSpace(p) == subprotocol {
				return true
			}
		}
	}
	return false
}

// socket is one WebSocket connection: its writes are serialized, its operations
// tracked by id.
type socket struct {
	s    *Server
	conn *websocket.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	ops  map[string]context.CancelFunc
	wg   sync.WaitGroup
}

// serveSocket runs the protocol until the socket closes; then every operation still
// running is cancelled (its generation closed) and waited for.
func (s *Server) serveSocket(base context.Context, conn *websocket.Conn, header []string) {
	ctx, cancel := context.WithCancel(base)
	sk := &socket{s: s, conn: conn, ops: map[string]context.CancelFunc{}}
	defer func() {
		cancel()
		sk.wg.Wait()
		_ = conn.Close()
	}()
	conn.SetReadLimit(maxMessageBytes)
	_ = conn.SetReadDeadline(time.Now().Add(s.opts.InitTimeout))
	acked := false
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			var ce *websocket.CloseError
			if !acked && !errors.As(err, &ce) && isTimeout(err) {
				sk.close(closeInitTimeout, "Connection initialisation timeout")
			} else if !errors.As(err, &ce) && !isTimeout(err) {
				var se *json.SyntaxError
				if errors.As(err, &se) {
					sk.close(closeBadRequest, "Invalid message received")
				}
			}
			return
		}
		switch m.Type {
		case msgConnectionInit:
			if acked {
				sk.close(closeTooManyInits, "Too many initialisation requests")
				return
			}
			caller, err := s.authenticate(initAuthorization(m.Payload, header))
			if err != nil {
				sk.close(closeForbidden, "Forbidden: "+infer.AsError(err, "").Message)
				return
			}
			acked = true
			if caller != nil {
				ctx = infer.WithCaller(ctx, caller)
			}
			_ = conn.SetReadDeadline(time.Time{})
			if sk.send(wsMessage{Type: msgConnectionAck}) != nil {
				return
			}
		case msgPing:
			if sk.send(wsMessage{Type: msgPong}) != nil {
				return
			}
		case msgPong:
		case msgSubscribe:
			if !acked {
				sk.close(closeUnauthorized, "Unauthorized")
				return
			}
			if m.ID == "" {
				sk.close(closeBadRequest, "Invalid message received: subscribe without id")
				return
			}
			p, err := decodeParams(m.Payload)
			if err != nil {
				sk.close(closeBadRequest, "Invalid message received: "+err.Error())
				return
			}
			if !sk.start(ctx, m.ID, p) {
				sk.close(closeDuplicateID, "Subscriber for "+m.ID+" already exists")
				return
			}
		case msgComplete:
			sk.stop(m.ID)
		default:
			sk.close(closeBadRequest, "Invalid message received: unknown type "+m.Type)
			return
		}
	}
}

// initAuthorization is the Authorization value of a connection_init payload
// ({"authorization": "Bearer KEY"}, any case of the name), else the upgrade request's
// header values.
func initAuthorization(payload json.RawMessage, header []string) []string {
	var p map[string]any
	if len(payload) > 0 && json.Unmarshal(payload, &p) == nil {
		var values []string
		for k, v := range p {
			if s, ok := v.(string); ok && strings.EqualFold(k, "authorization") {
				values = append(values, s)
			}
		}
		if len(values) > 0 {
			return values
		}
	}
	return header
}

// start runs operation id in its own goroutine; false when id is already running.
func (sk *socket) start(parent context.Context, id string, p *graphql.RawParams) bool {
	sk.mu.Lock()
	if _, dup := sk.ops[id]; dup {
		sk.mu.Unlock()
		return false
	}
	ctx, cancel := context.WithCancel(parent)
	sk.ops[id] = cancel
	sk.mu.Unlock()
	sk.wg.Add(1)
	go func() {
		defer sk.wg.Done()
		defer sk.stop(id)
		sk.run(ctx, id, p)
	}()
	return true
}

// stop cancels operation id (the client completed it, or it ended).
func (sk *socket) stop(id string) {
	sk.mu.Lock()
	cancel, ok := sk.ops[id]
	delete(sk.ops, id)
	sk.mu.Unlock()
	if ok {
		cancel()
	}
}

// run executes one operation: next for each response, then complete; error when it
// failed before producing any response or its generation failed later. Nothing is
// sent for an operation the client completed.
func (sk *socket) run(ctx context.Context, id string, p *graphql.RawParams) {
	ctx, failure := withStreamFailure(graphql.StartOperationTrace(ctx))
	exec := sk.s.exec
	rc, errs := exec.CreateOperationContext(ctx, p)
	if errs != nil {
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		sk.sendErrors(id, resp.Errors)
		return
	}
	h, ctx := exec.DispatchOperation(ctx, rc)
	for {
		resp := h(ctx)
		if resp == nil || ctx.Err() != nil {
			break
		}
		if resp.Data == nil && len(resp.Errors) > 0 {
			sk.sendErrors(id, resp.Errors)
			return
		}
		b, err := json.Marshal(resp)
		if err != nil || sk.send(wsMessage{Type: msgNext, ID: id, Payload: b}) != nil {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	if err := failure.get(); err != nil {
		sk.sendErrors(id, gqlerror.List{presentError(ctx, err)})
		return
	}
	_ = sk.send(wsMessage{Type: msgComplete, ID: id})
}

func (sk *socket) sendErrors(id string, errs gqlerror.List) {
	b, err := json.Marshal(errs)
	if err == nil {
		_ = sk.send(wsMessage{Type: msgError, ID: id, Payload: b})
	}
}

// send writes one message within the write timeout.
func (sk *socket) send(m wsMessage) error {
	sk.wmu.Lock()
	defer sk.wmu.Unlock()
	_ = sk.conn.SetWriteDeadline(time.Now().Add(sk.s.opts.WriteTimeout))
	return sk.conn.WriteJSON(m)
}

// close ends the connection with a protocol close code.
func (sk *socket) close(code int, reason string) {
	if len(reason) > 120 { // a close frame's reason has at most 123 bytes
		reason = reason[:120]
	}
	sk.wmu.Lock()
	defer sk.wmu.Unlock()
	_ = sk.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
