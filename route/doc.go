// Package route decides which upstream answers a request: Pool implements
// infer.Service over the members of each model (models served in this process and
// other hxp nodes), balancing by requests in flight, retrying on another member or a
// fallback model while nothing was returned, and keeping a circuit breaker and an
// active health check per member. Remote implements infer.Service for another hxp
// node, speaking the OpenAI wire format (package openai) over net/http.
//
// route owns the routing decisions, the breakers and health of upstreams, and the
// client side of node-to-node traffic. It imports the core (infer), the wire format
// (openai) and internal/breaker; it never imports a transport (fasthttp, gRPC), the
// tenancy package or the composition root. The caller's identity arrives in the
// context (infer.CallerFrom), put there by the transport.
package route
