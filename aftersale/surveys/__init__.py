"""Survey answers: one-click links, SMS/WhatsApp replies, and how both reach the inbox."""
