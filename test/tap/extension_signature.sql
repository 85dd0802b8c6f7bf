-- extension_signature.sql — every object the privacy extension owns, as text.
--
-- One row per object (and per sub-object: column, constraint, index,
-- trigger, policy, operator-class member), identified by
-- pg_identify_object_as_address and described by its full definition,
-- owner-independent, so that two databases can be compared with a diff: the
-- upgrade test compares a database upgraded from the previous release with
-- a fresh install.  Rows of the extension's tables that the install script
-- itself writes (built-in categories and purposes) are part of the
-- signature; everything else a user wrote is not.
--
--   psql -XAt -f extension_signature.sql  > signature.txt
WITH ext AS (
    SELECT oid FROM pg_extension WHERE extname = 'privacy'
), member AS (
    SELECT d.classid, d.objid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), ident AS (
    SELECT m.classid, m.objid,
           a.type || ' ' || array_to_string(a.object_names, '.')
             || CASE WHEN cardinality(a.object_args) > 0
                     THEN '(' || array_to_string(a.object_args, ',') || ')' ELSE '' END AS id
      FROM member m, LATERAL pg_identify_object_as_address(m.classid, m.objid, 0) a
), rels AS (
    SELECT i.objid AS relid, i.id FROM ident i WHERE i.classid = 'pg_class'::regclass
), lines(id, def) AS (
    -- every member: its kind and comment
    SELECT i.id, 'comment: ' || coalesce(obj_description(i.objid, i.classid::regclass::text), '')
      FROM ident i
    UNION ALL
    -- functions and procedures: the whole definition and the privileges
    SELECT i.id, pg_get_functiondef(i.objid) || E'\nacl: ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), 'default')
      FROM ident i JOIN pg_proc p ON p.oid = i.objid
     WHERE i.classid = 'pg_proc'::regclass AND p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT i.id, 'aggregate ' || pg_get_function_arguments(p.oid) || ' ' || a.aggtransfn::text || ' '
                 || a.aggfinalfn::text || ' ' || a.aggtranstype::regtype::text
                 || E'\nacl: ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), 'default')
      FROM ident i JOIN pg_proc p ON p.oid = i.objid JOIN pg_aggregate a ON a.aggfnoid = p.oid
     WHERE i.classid = 'pg_proc'::regclass
    UNION ALL
    -- relations: kind, options, row security, privileges
    SELECT r.id, format('relkind %s persistence %s rls %s force %s options %s replident %s acl %s',
                        c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                        coalesce(c.reloptions::text, '-'), c.relreplident, coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x), 'default'))
      FROM rels r JOIN pg_class c ON c.oid = r.relid
    UNION ALL
    SELECT r.id || ' column ' || a.attname,
           format('%s notnull %s default %s collation %s storage %s compression %s identity %s generated %s acl %s comment %s',
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-'),
                  coalesce(nullif(a.attcollation, 0)::regcollation::text, '-'),
                  a.attstorage, coalesce(nullif(a.attcompression, '')::text, '-'),
                  coalesce(nullif(a.attidentity, '')::text, '-'), coalesce(nullif(a.attgenerated, '')::text, '-'),
                  coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x), 'default'), coalesce(col_description(a.attrelid, a.attnum), ''))
      FROM rels r JOIN pg_attribute a ON a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT r.id || ' view', pg_get_viewdef(r.relid)
      FROM rels r JOIN pg_class c ON c.oid = r.relid WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT r.id || ' constraint ' || con.conname, pg_get_constraintdef(con.oid)
      FROM rels r JOIN pg_constraint con ON con.conrelid = r.relid
    UNION ALL
    SELECT r.id || ' index ' || ic.relname, pg_get_indexdef(ic.oid)
      FROM rels r JOIN pg_index x ON x.indrelid = r.relid JOIN pg_class ic ON ic.oid = x.indexrelid
    UNION ALL
    SELECT r.id || ' trigger ' || t.tgname, pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
      FROM rels r JOIN pg_trigger t ON t.tgrelid = r.relid AND NOT t.tgisinternal
    UNION ALL
    SELECT r.id || ' policy ' || p.polname,
           format('%s %s %s using %s check %s', p.polcmd, p.polpermissive, p.polroles::regrole[]::text,
                  coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),
                  coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'))
      FROM rels r JOIN pg_policy p ON p.polrelid = r.relid
    UNION ALL
    SELECT r.id || ' sequence', format('%s start %s inc %s min %s max %s cycle %s',
                                       s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
      FROM rels r JOIN pg_sequence s ON s.seqrelid = r.relid
    UNION ALL
    SELECT r.id || ' config dump', coalesce(e.extcondition[array_position(e.extconfig, r.relid)], '-')
      FROM rels r, pg_extension e
     WHERE e.extname = 'privacy' AND r.relid = ANY (e.extconfig)
    UNION ALL
    -- types
    SELECT i.id, format('type %s input %s output %s receive %s send %s modin %s modout %s len %s byval %s align %s storage %s category %s preferred %s collatable %s acl %s',
                        t.typtype, t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout,
                        t.typlen, t.typbyval, t.typalign, t.typstorage, t.typcategory, t.typispreferred,
                        t.typcollation <> 0, coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(t.typacl) x), 'default'))
      FROM ident i JOIN pg_type t ON t.oid = i.objid WHERE i.classid = 'pg_type'::regclass
    UNION ALL
    SELECT i.id || ' attribute ' || a.attname, format_type(a.atttypid, a.atttypmod)
      FROM ident i JOIN pg_type t ON t.oid = i.objid
      JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE i.classid = 'pg_type'::regclass
    UNION ALL
    -- operators, classes, families, casts, event triggers, schemas
    SELECT i.id, format('%s %s %s -> %s proc %s commutator %s negator %s restrict %s join %s hashes %s merges %s',
                        o.oprname, o.oprleft::regtype, o.oprright::regtype, o.oprresult::regtype, o.oprcode,
                        o.oprcom::regoperator, o.oprnegate::regoperator, o.oprrest, o.oprjoin,
                        o.oprcanhash, o.oprcanmerge)
      FROM ident i JOIN pg_operator o ON o.oid = i.objid WHERE i.classid = 'pg_operator'::regclass
    UNION ALL
    SELECT i.id, format('method %s type %s default %s family %s.%s', am.amname, oc.opcintype::regtype,
                        oc.opcdefault, fn.nspname, f.opfname)
      FROM ident i JOIN pg_opclass oc ON oc.oid = i.objid JOIN pg_am am ON am.oid = oc.opcmethod
      JOIN pg_opfamily f ON f.oid = oc.opcfamily JOIN pg_namespace fn ON fn.oid = f.opfnamespace
     WHERE i.classid = 'pg_opclass'::regclass
    UNION ALL
    SELECT i.id || ' op ' || ao.amopstrategy || ' ' || ao.amoplefttype::regtype || ' ' || ao.amoprighttype::regtype,
           ao.amopopr::regoperator::text
      FROM ident i JOIN pg_amop ao ON ao.amopfamily = i.objid WHERE i.classid = 'pg_opfamily'::regclass
    UNION ALL
    SELECT i.id || ' proc ' || ap.amprocnum || ' ' || ap.amproclefttype::regtype || ' ' || ap.amprocrighttype::regtype,
           ap.amproc::regprocedure::text
      FROM ident i JOIN pg_amproc ap ON ap.amprocfamily = i.objid WHERE i.classid = 'pg_opfamily'::regclass
    UNION ALL
    SELECT i.id, format('function %s context %s method %s', c.castfunc::regprocedure, c.castcontext, c.castmethod)
      FROM ident i JOIN pg_cast c ON c.oid = i.objid WHERE i.classid = 'pg_cast'::regclass
    UNION ALL
    SELECT i.id, format('event %s function %s enabled %s tags %s', e.evtevent, e.evtfoid::regprocedure,
                        e.evtenabled, coalesce(e.evttags::text, '-'))
      FROM ident i JOIN pg_event_trigger e ON e.oid = i.objid WHERE i.classid = 'pg_event_trigger'::regclass
    UNION ALL
    SELECT i.id, 'acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x), 'default')
      FROM ident i JOIN pg_namespace n ON n.oid = i.objid WHERE i.classid = 'pg_namespace'::regclass
    UNION ALL
    SELECT 'schema ' || n.nspname, 'acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x), 'default')
      FROM pg_namespace n, pg_extension e
     WHERE e.extname = 'privacy' AND n.oid = e.extnamespace
    UNION ALL
    -- the rows the install script writes
    SELECT 'row privacy.categories ' || c.name, (to_jsonb(c) - 'created_at' - 'created_by')::text
      FROM privacy.categories c WHERE c.builtin
    UNION ALL
    SELECT 'row privacy.purposes ' || p.name, (to_jsonb(p) - 'created_at' - 'created_by')::text
      FROM privacy.purposes p WHERE p.name = 'subject_access'
)
SELECT id || E'\n    ' || replace(def, E'\n', E'\n    ') FROM lines ORDER BY id, def;
