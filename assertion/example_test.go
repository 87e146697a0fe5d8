package assertion_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/authgate/authgate/assertion"
)

// An upstream service behind authgate that believes only a verified
// assertion, never the plain X-User-* headers.
func ExampleVerifier_Middleware() {
	v, err := assertion.New(assertion.Config{
		JWKSURL:  "http://authgate.auth.svc:8080/.well-known/jwks.json",
		Issuer:   "https://authgate.example.com",
		Audience: "orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Keys refreshed in the background: no request waits for a fetch.
	go func() { _ = v.Run(context.Background()) }()
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := assertion.FromContext(r.Context())
		fmt.Fprintf(w, "orders of %s (%s)\n", c.Subject, c.UserType)
	})
	http.Handle("/orders/", v.Middleware(orders))
	// log.Fatal(http.ListenAndServe(":3000", nil))
}
