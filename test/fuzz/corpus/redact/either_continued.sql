2SELECT 'a'
'b'