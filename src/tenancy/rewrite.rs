//! Request and reply rewriting for tenants (being written).
