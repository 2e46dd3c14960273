"""Local HTTP servers playing SendGrid, CM.com (SMS) and Bancontact, checking requests as documented."""
