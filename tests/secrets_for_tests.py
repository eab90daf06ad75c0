"""Keys the tests configure: long enough for the 32-character minimum of KILN_SECRET
and KILN_ADMIN_KEY (serving.core.settings), and plainly not for production."""

TEST_SECRET = "kiln-test-secret-not-for-production-0001"
TEST_ADMIN_KEY = "kiln_test-admin-key-not-for-production-0001"
